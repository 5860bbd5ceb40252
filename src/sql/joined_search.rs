//! pgvector's search shape over a join, as LangGraph's store writes it:
//!
//! ```sql
//! SELECT ... FROM store JOIN store_vectors sv
//!   ON store.prefix = sv.prefix AND store.key = sv.key
//! WHERE store.prefix LIKE 'users%' AND store.value->'kind' = '3'::jsonb
//! ORDER BY sv.embedding <=> $1 LIMIT 10
//! ```
//!
//! The join is on the other table's whole primary key, so each row of the searched
//! table meets at most one of its rows: the k nearest rows of the join are the k
//! nearest searched rows whose joined row exists and passes that table's conditions.
//! The searched table becomes a [`super::vector_search`] restricted to the keys of
//! those rows (a subquery of them):
//!
//! ```sql
//! ... JOIN vector_search('store_vectors', $1, 10, 'prefix, key',
//!       (SELECT struct(store.prefix, store.key) FROM store
//!        WHERE store.prefix LIKE 'users%' AND store.value->'kind' = '3'::jsonb)) sv ...
//! ```
//!
//! The search asks the index for hits until k of them are such rows: it reads the
//! other table's rows the hits point at by key and checks its conditions on them (or,
//! when they keep failing, runs the subquery and checks the hits against its keys); the
//! join and the WHERE clause then run as written, the other table read by the keys the
//! search found (a hash join's run-time filter, see `tables::RowScanExec`). Anything else (an outer join, a condition reading
//! both tables, a column name both tables have, unqualified) is left as it was: an
//! exact join.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Ident, JoinConstraint, JoinOperator, OrderByExpr, Select,
    SelectItem, TableFactor, visit_expressions,
};

use super::pgvector::{
    SEARCH_DISTANCE, and_all, conjuncts, read_distance, search_alias, visible_columns,
};
use super::statements::quote_ident;
use crate::engine::Core;
use crate::store::{Distance, TableDef};

/// One side of the join.
struct Side {
    /// The name its columns are qualified by: its alias, or its table's name.
    alias: Ident,
    /// Its table's name, as `vector_search` takes it.
    table: String,
    def: std::sync::Arc<TableDef>,
}

impl Side {
    fn of(factor: &TableFactor, shared: &Core) -> Option<Side> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return None;
        };
        let table = super::statements::table_name(name).ok()?;
        let def = shared.table(&table).ok()?;
        let alias = match alias {
            Some(a) if a.columns.is_empty() => a.name.clone(),
            Some(_) => return None,
            None => Ident::new(name.0.last()?.as_ident()?.value.clone()),
        };
        Some(Side { alias, table, def })
    }

    fn named(&self, qualifier: &Ident) -> bool {
        same_ident(&self.alias, qualifier)
    }
}

fn same_ident(a: &Ident, b: &Ident) -> bool {
    match (a.quote_style, b.quote_style) {
        (None, None) => a.value.eq_ignore_ascii_case(&b.value),
        _ => a.value == b.value,
    }
}

/// Which side a column reference is of (0: the other table, 1: the searched one), with
/// its column; `None` when it is of neither or could be of both.
fn column_of(e: &SqlExpr, sides: &[&Side; 2]) -> Option<(usize, usize)> {
    match e {
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
            let s = sides.iter().position(|s| s.named(&parts[0]))?;
            Some((s, sides[s].def.column_index(&parts[1].value)?))
        }
        SqlExpr::Identifier(i) => {
            let found: Vec<(usize, usize)> = sides
                .iter()
                .enumerate()
                .filter_map(|(s, side)| side.def.column_index(&i.value).map(|c| (s, c)))
                .collect();
            match found.as_slice() {
                [one] => Some(*one),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The sides an expression's columns are of (a bit per side); `None` when it reads a
/// column of neither, or has a subquery.
fn sides_read(e: &SqlExpr, sides: &[&Side; 2]) -> Option<u8> {
    let mut read = 0u8;
    let flow = visit_expressions(e, |x| {
        match x {
            SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => match column_of(x, sides) {
                Some((s, _)) => read |= 1 << s,
                None => return ControlFlow::Break(()),
            },
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. } => {
                return ControlFlow::Break(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    flow.is_continue().then_some(read)
}

/// Rewrite `select` (one join, already checked to have no GROUP BY or DISTINCT) whose
/// first ORDER BY item is `first`, a distance operator of `distance`, with LIMIT `k`.
pub(super) fn rewrite(
    select: &mut Select,
    first: &mut OrderByExpr,
    distance: Distance,
    k: &str,
    shared: &Core,
) {
    let Some(done) = plan(select, first, distance, k, shared) else {
        return;
    };
    let Rewrite {
        searched_right,
        factor,
        alias,
        other_cols,
        searched_cols,
    } = done;
    let op_expr = std::mem::replace(
        &mut first.expr,
        SqlExpr::CompoundIdentifier(vec![alias.clone(), Ident::with_quote('"', SEARCH_DISTANCE)]),
    );
    let twt = &mut select.from[0];
    if searched_right {
        twt.joins[0].relation = factor;
    } else {
        twt.relation = factor;
    }
    // `SELECT *` is both tables' columns in FROM order, without the search's distance.
    let (left, right) = if searched_right {
        (other_cols.0.clone(), searched_cols.clone())
    } else {
        (searched_cols.clone(), other_cols.0.clone())
    };
    let other_alias = other_cols.1;
    read_distance(select, &op_expr, &alias, |item| match item {
        SelectItem::Wildcard(_) => Some(left.iter().chain(&right).cloned().collect()),
        SelectItem::QualifiedWildcard(
            datafusion::sql::sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(n),
            _,
        ) => {
            let q = n.0.last()?.as_ident()?;
            if same_ident(q, &alias) {
                Some(searched_cols.clone())
            } else if same_ident(q, &other_alias) {
                Some(other_cols.0.clone())
            } else {
                None
            }
        }
        _ => None,
    });
}

struct Rewrite {
    searched_right: bool,
    factor: TableFactor,
    alias: Ident,
    /// The other table's visible columns, and its alias.
    other_cols: (Vec<SelectItem>, Ident),
    searched_cols: Vec<SelectItem>,
}

fn plan(
    select: &Select,
    first: &OrderByExpr,
    distance: Distance,
    k: &str,
    shared: &Core,
) -> Option<Rewrite> {
    let twt = &select.from[0];
    let join = &twt.joins[0];
    let on = match &join.join_operator {
        JoinOperator::Join(JoinConstraint::On(on))
        | JoinOperator::Inner(JoinConstraint::On(on)) => on,
        _ => return None,
    };
    let left = Side::of(&twt.relation, shared)?;
    let right = Side::of(&join.relation, shared)?;
    if same_ident(&left.alias, &right.alias) {
        return None;
    }
    let SqlExpr::BinaryOp {
        left: a, right: b, ..
    } = &first.expr
    else {
        return None;
    };
    // The searched side: the one whose indexed column the operator reads.
    let both = [&left, &right];
    let indexed = |e: &SqlExpr| {
        let (s, c) = column_of(e, &both)?;
        (both[s].def.distance_of(c) == Some(distance)).then_some((s, c))
    };
    let ((searched, vector_col), query) = match (indexed(a), indexed(b)) {
        (Some(found), None) => (found, b),
        (None, Some(found)) => (found, a),
        _ => return None,
    };
    // The query vector reads no column (a literal, a parameter, a cast of one).
    if sides_read(query, &both) != Some(0) {
        return None;
    }
    let (other, vec_side) = (both[1 - searched], both[searched]);
    // Sides in the order (other, searched) from here on.
    let sides = [other, vec_side];
    // ON: equalities of the other table's columns with the searched table's, covering
    // the other table's primary key.
    let mut parts = Vec::new();
    conjuncts(on.clone(), &mut parts);
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for p in &parts {
        let SqlExpr::BinaryOp {
            left: x,
            op: BinaryOperator::Eq,
            right: y,
        } = p
        else {
            return None;
        };
        let (sx, cx) = column_of(x, &sides)?;
        let (sy, cy) = column_of(y, &sides)?;
        match (sx, sy) {
            (0, 1) => pairs.push((cx, cy)),
            (1, 0) => pairs.push((cy, cx)),
            _ => return None,
        }
    }
    let key_cols = other
        .def
        .primary_key
        .iter()
        .map(|pk| pairs.iter().find(|(o, _)| o == pk).map(|(_, v)| *v))
        .collect::<Option<Vec<usize>>>()?;
    if other.def.primary_key.is_empty() {
        return None;
    }
    // WHERE: what reads only the other table restricts the search; what reads only the
    // searched one reaches it as a filter anyway; a condition on both is not rewritten.
    let mut restrict = Vec::new();
    if let Some(w) = &select.selection {
        let mut ws = Vec::new();
        conjuncts(w.clone(), &mut ws);
        for c in ws {
            match sides_read(&c, &sides)? {
                0 | 1 => restrict.push(c),
                2 => {}
                _ => return None,
            }
        }
    }
    let names: Vec<&str> = key_cols
        .iter()
        .map(|&c| vec_side.def.columns[c].name.as_str())
        .collect();
    if names.iter().any(|n| n.contains(',') || n.contains('\'')) {
        return None;
    }
    let other_factor = if searched == 0 {
        &join.relation
    } else {
        &twt.relation
    };
    let keys = other
        .def
        .primary_key
        .iter()
        .map(|&c| {
            format!(
                "{}.{}",
                quote_ident(&other.alias.value),
                quote_ident(&other.def.columns[c].name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut subquery = format!("SELECT struct({keys}) FROM {other_factor}");
    if let Some(w) = and_all(restrict) {
        subquery.push_str(&format!(" WHERE {w}"));
    }
    let column = if vec_side.def.vector_columns().nth(1).is_some() {
        format!(
            "'{}', ",
            vec_side.def.columns[vector_col].name.replace('\'', "''")
        )
    } else {
        String::new()
    };
    let search = format!(
        "vector_search('{}', {column}{query}, {k}, '{}', ({subquery}))",
        vec_side.table.replace('\'', "''"),
        names.join(", "),
    );
    let mut parsed = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(&format!("SELECT 1 FROM {search}"))
    .and_then(|mut p| p.parse_query())
    .ok()?;
    let datafusion::sql::sqlparser::ast::SetExpr::Select(ps) = parsed.body.as_mut() else {
        return None;
    };
    let mut factor = ps.from.remove(0).relation;
    if let TableFactor::Table { alias: a, .. } = &mut factor {
        *a = Some(search_alias(&vec_side.def, vec_side.alias.clone()));
    }
    Some(Rewrite {
        searched_right: searched == 1,
        factor,
        alias: vec_side.alias.clone(),
        other_cols: (
            visible_columns(&other.def, &other.alias),
            other.alias.clone(),
        ),
        searched_cols: visible_columns(&vec_side.def, &vec_side.alias),
    })
}
