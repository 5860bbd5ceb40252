//! Catalog queries that take a key column apart, as Django's introspection (and
//! `inspectdb`) writes them: `unnest(c.conkey) WITH ORDINALITY cols(colid, arridx)` in a
//! FROM, correlated with an outer `pg_constraint` row or joined with a `pg_index` row
//! beside it; `ARRAY(SELECT ... ORDER BY ...)`; and `con.conkey[1]`. The query engine
//! has no `WITH ORDINALITY`, no lateral `unnest` of another FROM item's column and no
//! `ARRAY(subquery)`, so each becomes what it can plan:
//!
//! - the `unnest` becomes a derived table of the whole catalog relation, one row per
//!   element with its relation's key, its position and the element itself, joined back
//!   to the row it was written against by that key (a condition added to the WHERE);
//! - `ARRAY(SELECT x ... ORDER BY o)` becomes `(SELECT array_agg(x ORDER BY o) ...)`;
//! - a subscript of a key column becomes `array_element` of its elements (`int2vector`
//!   columns such as `indkey` count from 0, `int2[]` ones such as `conkey` from 1).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr as SqlExpr, FunctionArguments, Ident, Query, Select, SelectItem, SetExpr,
    Statement, Subscript, TableFactor, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Key columns kept as text by the catalog emulation, with the first subscript of each:
/// `int2vector` columns count from 0, `int2[]` columns from 1.
const KEY_COLUMNS: [(&str, i64); 6] = [
    ("indkey", 0),
    ("indclass", 0),
    ("indoption", 0),
    ("indcollation", 0),
    ("conkey", 1),
    ("confkey", 1),
];

/// Catalog relations whose key columns can be taken apart, with the column that
/// identifies a row.
const KEYED: [(&str, &str); 2] = [("pg_constraint", "oid"), ("pg_index", "indexrelid")];

/// The column of the derived table that carries its relation's key.
const KEY_ALIAS: &str = "__vg_key";

/// Rewrite a statement over the catalog (see the module's text); whether it took an
/// `unnest` or an `ARRAY(subquery)` apart. In a select list where it did, the scalar
/// subqueries beside it are kept as `(...)`: the compatibility parser, which runs after
/// this on such a statement, would make a correlated one NULL (Django's foreign-key
/// column of `get_constraints`), and the engine can plan them once it has
/// decorrelated them as aggregates.
pub fn rewrite(stmt: &mut Statement) -> bool {
    let mut changed = false;
    if let Statement::Query(q) = stmt {
        query(q, &[], &mut changed);
    }
    key_subscripts(stmt);
    changed
}

/// The FROM items in scope: (the name a query refers to it by, the relation's name).
type Scope = [(String, String)];

fn query(q: &mut Query, outer: &Scope, changed: &mut bool) {
    set_expr(&mut q.body, outer, changed);
}

fn set_expr(body: &mut SetExpr, outer: &Scope, changed: &mut bool) {
    match body {
        SetExpr::Select(s) => select(s, outer, changed),
        SetExpr::Query(q) => query(q, outer, changed),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr(left, outer, changed);
            set_expr(right, outer, changed);
        }
        _ => {}
    }
}

fn select(s: &mut Select, outer: &Scope, changed: &mut bool) {
    let mut scope = outer.to_vec();
    for from in &s.from {
        bind(&from.relation, &mut scope);
        for j in &from.joins {
            bind(&j.relation, &mut scope);
        }
    }
    let mut conditions = Vec::new();
    for from in &mut s.from {
        factor(&mut from.relation, outer, &scope, &mut conditions, changed);
        for j in &mut from.joins {
            factor(&mut j.relation, outer, &scope, &mut conditions, changed);
        }
    }
    *changed |= !conditions.is_empty();
    if !conditions.is_empty() {
        let mut all: Vec<SqlExpr> = s.selection.take().into_iter().collect();
        all.extend(conditions);
        s.selection = all.into_iter().reduce(|a, b| SqlExpr::BinaryOp {
            left: Box::new(a),
            op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    let mut here = false;
    for item in &mut s.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            subqueries(e, &scope, &mut here);
        }
    }
    if let Some(w) = &mut s.selection {
        subqueries(w, &scope, &mut here);
    }
    if here {
        for item in &mut s.projection {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                && matches!(e, SqlExpr::Subquery(_))
            {
                *e = SqlExpr::Nested(Box::new(e.clone()));
            }
        }
    }
    *changed |= here;
}

/// The name a FROM item is referred to by, and the relation it reads.
fn bind(f: &TableFactor, scope: &mut Vec<(String, String)>) {
    if let TableFactor::Table { name, alias, .. } = f
        && let Some(relation) = name.0.last().and_then(|p| p.as_ident())
    {
        let relation = relation.value.to_ascii_lowercase();
        let by = alias
            .as_ref()
            .map_or_else(|| relation.clone(), |a| a.name.value.to_ascii_lowercase());
        scope.push((by, relation));
    }
}

/// A FROM item: a derived table's own query (which sees only the outer scope), or an
/// `unnest` of key columns taken apart.
fn factor(
    f: &mut TableFactor,
    outer: &Scope,
    scope: &Scope,
    conditions: &mut Vec<SqlExpr>,
    changed: &mut bool,
) {
    if let TableFactor::Derived { subquery, .. } = f {
        query(subquery, outer, changed);
        return;
    }
    if let Some((derived, condition)) = unnest_of_keys(f, scope) {
        *f = derived;
        conditions.push(condition);
    }
}

/// `unnest(b.k1, b.k2, ...) [WITH ORDINALITY] alias(c1, c2, ..., [n])` where `b` is a
/// keyed catalog relation in scope and every `k` one of its key columns: the derived
/// table and the condition that joins it to `b`'s row.
fn unnest_of_keys(f: &TableFactor, scope: &Scope) -> Option<(TableFactor, SqlExpr)> {
    let TableFactor::UNNEST {
        alias: Some(alias),
        array_exprs,
        with_offset: false,
        with_ordinality,
        ..
    } = f
    else {
        return None;
    };
    let mut binding: Option<String> = None;
    let mut columns = Vec::new();
    for e in array_exprs {
        let SqlExpr::CompoundIdentifier(parts) = e else {
            return None;
        };
        let [b, c] = parts.as_slice() else {
            return None;
        };
        let b = b.value.to_ascii_lowercase();
        if binding.get_or_insert_with(|| b.clone()) != &b {
            return None;
        }
        let c = c.value.to_ascii_lowercase();
        KEY_COLUMNS.iter().find(|(k, _)| *k == c)?;
        columns.push(c);
    }
    let binding = binding?;
    let relation = scope
        .iter()
        .rev()
        .find(|(by, _)| *by == binding)?
        .1
        .as_str();
    let key = KEYED.iter().find(|(r, _)| *r == relation)?.1;
    let names: Vec<&Ident> = alias.columns.iter().map(|c| &c.name).collect();
    if names.len() != columns.len() + usize::from(*with_ordinality) {
        return None;
    }
    let elements = |c: &str| {
        format!(
            "CAST(string_to_array(btrim(replace(__vg_u.{c}, ',', ' '), '{{}}'), ' ') AS smallint[])"
        )
    };
    let mut select: Vec<String> = vec![format!("__vg_u.{key} AS {KEY_ALIAS}")];
    for (c, name) in columns.iter().zip(&names) {
        select.push(format!("unnest({}) AS {name}", elements(c)));
    }
    if *with_ordinality {
        let lengths: Vec<String> = columns
            .iter()
            .map(|c| {
                format!(
                    "CAST(coalesce(array_length({}, 1), 0) AS bigint)",
                    elements(c)
                )
            })
            .collect();
        let length = match lengths.as_slice() {
            [one] => one.clone(),
            many => format!("greatest({})", many.join(", ")),
        };
        select.push(format!(
            "unnest(generate_series(1, {length})) AS {}",
            names[columns.len()]
        ));
    }
    let sql = format!(
        "SELECT {} FROM pg_catalog.{relation} AS __vg_u",
        select.join(", ")
    );
    let subquery = parse_query(&sql)?;
    let mut table_alias = alias.clone();
    table_alias.columns.clear();
    let condition = parse_expr(&format!(
        "{}.{KEY_ALIAS} = {binding}.{key}",
        table_alias.name
    ))?;
    Some((
        TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias: Some(table_alias),
            sample: None,
        },
        condition,
    ))
}

/// Subqueries inside an expression (each sees `scope`), and `ARRAY(subquery)` made an
/// aggregate.
fn subqueries(e: &mut SqlExpr, scope: &Scope, changed: &mut bool) {
    let _ = visit_expressions_mut(e, |x| {
        match x {
            SqlExpr::Subquery(q)
            | SqlExpr::Exists { subquery: q, .. }
            | SqlExpr::InSubquery { subquery: q, .. } => query(q, scope, changed),
            SqlExpr::Function(f)
                if f.name.0.len() == 1
                    && f.name
                        .0
                        .last()
                        .and_then(|p| p.as_ident())
                        .is_some_and(|i| i.value.eq_ignore_ascii_case("array")) =>
            {
                if let FunctionArguments::Subquery(q) = &mut f.args {
                    query(q, scope, changed);
                    if let Some(aggregated) = array_of(q) {
                        *x = aggregated;
                        *changed = true;
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT x FROM ... ORDER BY o)` as `(SELECT array_agg(x ORDER BY o) FROM ...)`:
/// for a query of one column without grouping, DISTINCT or LIMIT. (Over no rows the
/// aggregate is NULL where Postgres gives an empty array.)
fn array_of(q: &Query) -> Option<SqlExpr> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = !matches!(
        &s.group_by,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty()
    );
    if s.projection.len() != 1
        || grouped
        || s.distinct.is_some()
        || s.having.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || q.with.is_some()
    {
        return None;
    }
    let (SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }) = &s.projection[0]
    else {
        return None;
    };
    let order = match &q.order_by {
        None => String::new(),
        Some(o) => match &o.kind {
            datafusion::sql::sqlparser::ast::OrderByKind::Expressions(list) => format!(
                " ORDER BY {}",
                list.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => return None,
        },
    };
    let aggregate = parse_expr(&format!("array_agg({x}{order})"))?;
    let mut inner = q.clone();
    inner.order_by = None;
    if let SetExpr::Select(s) = inner.body.as_mut() {
        s.projection = vec![SelectItem::UnnamedExpr(aggregate)];
    }
    Some(SqlExpr::Subquery(Box::new(inner)))
}

/// `con.conkey[1]`, `i.indkey[0]`: the element of the key column's elements.
fn key_subscripts(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::CompoundFieldAccess { root, access_chain } = e
            && let Some(AccessExpr::Subscript(Subscript::Index { index })) = access_chain.last()
        {
            // The column's name: the root's last part, or a `.name` before the subscript.
            let mut path: Vec<String> = match root.as_ref() {
                SqlExpr::Identifier(i) => vec![i.to_string()],
                SqlExpr::CompoundIdentifier(p) => p.iter().map(ToString::to_string).collect(),
                _ => return ControlFlow::Continue(()),
            };
            for a in &access_chain[..access_chain.len() - 1] {
                match a {
                    AccessExpr::Dot(SqlExpr::Identifier(i)) => path.push(i.to_string()),
                    _ => return ControlFlow::Continue(()),
                }
            }
            let Some(first) = path.last().and_then(|c| {
                KEY_COLUMNS
                    .iter()
                    .find(|(k, _)| c.eq_ignore_ascii_case(k))
                    .map(|(_, f)| *f)
            }) else {
                return ControlFlow::Continue(());
            };
            let column = path.join(".");
            let position = if first == 0 {
                format!("({index}) + 1")
            } else {
                index.to_string()
            };
            if let Some(x) = parse_expr(&format!(
                "array_element(CAST(string_to_array(btrim(replace({column}, ',', ' '), '{{}}'), ' ') AS smallint[]), {position})"
            )) {
                *e = x;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn parse_query(sql: &str) -> Option<Query> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()? {
        Statement::Query(q) => Some(*q),
        _ => None,
    }
}

fn parse_expr(sql: &str) -> Option<SqlExpr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .pop()
            .expect("one");
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn a_correlated_unnest_with_ordinality_becomes_a_keyed_derived_table() {
        let out = rewritten(
            "SELECT c.conname, array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY cols(colid, arridx) \
             JOIN pg_attribute AS ca ON cols.colid = ca.attnum WHERE ca.attrelid = c.conrelid ORDER BY cols.arridx) \
             FROM pg_constraint AS c",
        );
        assert!(!out.contains("ORDINALITY"), "{out}");
        assert!(
            out.contains("array_agg(attname ORDER BY cols.arridx)"),
            "{out}"
        );
        assert!(out.contains("__vg_u.oid AS __vg_key"), "{out}");
        assert!(out.contains("cols.__vg_key = c.oid"), "{out}");
    }

    #[test]
    fn an_unnest_beside_its_row_is_joined_by_the_key() {
        let out = rewritten(
            "SELECT * FROM pg_index i, unnest(i.indkey, i.indoption) WITH ORDINALITY koi(key, option, arridx)",
        );
        assert!(out.contains("__vg_u.indexrelid AS __vg_key"), "{out}");
        assert!(out.contains("AS option"), "{out}");
        assert!(out.contains("greatest("), "{out}");
        assert!(out.contains("WHERE koi.__vg_key = i.indexrelid"), "{out}");
    }

    #[test]
    fn subscripts_of_key_columns_count_as_their_types_do() {
        let out = rewritten("SELECT con.conkey[1], i.indkey[0] FROM pg_constraint con, pg_index i");
        assert!(out.contains("replace(con.conkey"), "{out}");
        assert!(out.contains("SMALLINT[]), 1)"), "{out}");
        assert!(out.contains("SMALLINT[]), (0) + 1)"), "{out}");
        // Anything else is left alone.
        let other = "SELECT a[1] FROM t, UNNEST(t.a) WITH ORDINALITY u (x, n)";
        assert_eq!(rewritten(other), other);
    }
}
