//! `SELECT ... FOR UPDATE` (and `FOR SHARE`, `OF table`, `NOWAIT`, `SKIP LOCKED`): the
//! rows the query returns are locked as an UPDATE locks them
//! ([`crate::engine::row_locks`]) until the transaction ends, and come back as they are
//! once locked. The query runs with the key columns of each locked table added to its
//! select list; their values name the locks; a row another session changed before its
//! lock was had makes the query run again. `FOR SHARE` locks as `FOR UPDATE` does (two
//! sharers wait for each other: stricter than Postgres, never weaker).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, LimitClause, NonBlock, Query, SelectItem, SetExpr, Statement, TableFactor,
    Value as SqlValue,
};

use super::statements::{key_in_types, table_name};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::{TableDef, keys};
use crate::types::value_from_array;

/// A locked table of the query.
struct Locked {
    def: Arc<TableDef>,
    /// Where its key columns are among the columns added to the select list.
    at: usize,
}

/// How many columns the locked tables' keys add to the select list.
fn wide_columns(locked: &[Locked]) -> usize {
    locked.iter().map(|l| l.def.primary_key.len()).sum()
}

/// `FOR NO KEY UPDATE` and `FOR KEY SHARE` (Django's `select_for_update(no_key=True)`)
/// are Postgres' weaker row locks; the SQL parser knows only `FOR UPDATE` and `FOR
/// SHARE`, which vectorgate takes for them (a stricter lock: more waiting, never less).
/// `None` when the text has neither.
pub fn stricter_lock_modes(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !super::pgvector::mentions(sql, "key") || !super::pgvector::mentions(sql, "for") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    // The positions of the words, whitespace left out.
    let words: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .collect();
    let mut dropped = vec![false; tokens.len()];
    for w in words.windows(4) {
        let [f, a, b, c] = [w[0], w[1], w[2], w[3]];
        if word(f).as_deref() != Some("FOR") {
            continue;
        }
        match (word(a).as_deref(), word(b).as_deref(), word(c).as_deref()) {
            // FOR NO KEY UPDATE: NO and KEY (and the space after each) go.
            (Some("NO"), Some("KEY"), Some("UPDATE")) => {
                (a..c).for_each(|i| dropped[i] = true);
            }
            // FOR KEY SHARE: KEY goes.
            (Some("KEY"), Some("SHARE"), _) => (a..b).for_each(|i| dropped[i] = true),
            _ => {}
        }
    }
    // `FOR KEY SHARE` at the very end has no fourth word.
    if let [.., f, a, b] = words.as_slice()
        && word(*f).as_deref() == Some("FOR")
        && word(*a).as_deref() == Some("KEY")
        && word(*b).as_deref() == Some("SHARE")
    {
        (*a..*b).for_each(|i| dropped[i] = true);
    }
    if !dropped.contains(&true) {
        return None;
    }
    Some(
        tokens
            .iter()
            .zip(dropped)
            .filter(|(_, d)| !d)
            .map(|(t, _)| t.to_string())
            .collect(),
    )
}

/// Whether `stmt` has a locking clause anywhere but on the top-level query (which
/// [`select`] runs): a subquery's or a CTE's would be read and not locked, so they are
/// refused (0A000) rather than ignored.
pub fn refuse_nested(stmt: &Statement) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    use std::ops::ControlFlow;
    struct Nested {
        depth: usize,
        top: bool,
    }
    impl Visitor for Nested {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            let nested = self.depth > 0 || !self.top;
            self.depth += 1;
            if nested && !q.locks.is_empty() {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut v = Nested {
        depth: 0,
        top: matches!(stmt, Statement::Query(_)),
    };
    if stmt.visit(&mut v).is_break() {
        return Err(Error::FeatureNotSupported(
            "FOR UPDATE/FOR SHARE is supported on the outermost SELECT only, not in a subquery or WITH"
                .into(),
        ));
    }
    Ok(())
}

/// Run a query that has a locking clause.
pub async fn select(session: &Session, query: &Query) -> Result<Output> {
    if session.read_only() {
        return Err(Error::ReadOnly(
            "cannot execute SELECT FOR UPDATE in a read-only transaction".into(),
        ));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(Error::FeatureNotSupported(
            "FOR UPDATE is not allowed with UNION/INTERSECT/EXCEPT".into(),
        ));
    };
    if select.distinct.is_some() {
        return Err(Error::FeatureNotSupported(
            "FOR UPDATE is not allowed with DISTINCT clause".into(),
        ));
    }
    let grouped = match &select.group_by {
        datafusion::sql::sqlparser::ast::GroupByExpr::All(_) => true,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    if grouped || select.having.is_some() {
        return Err(Error::FeatureNotSupported(
            "FOR UPDATE is not allowed with GROUP BY clause".into(),
        ));
    }
    // The tables of the FROM list, by the name their columns go by.
    let mut from: Vec<(String, Arc<TableDef>)> = Vec::new();
    for twj in &select.from {
        for factor in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = factor
            else {
                continue;
            };
            let Ok(def) = session.engine.core.table(&table_name(name)?) else {
                continue;
            };
            let by = match alias {
                Some(a) => a.name.value.clone(),
                None => def.relname().to_string(),
            };
            from.push((by, def));
        }
    }
    // Which of them are locked: those an `OF` names, or all.
    let mut chosen: Vec<(String, Arc<TableDef>)> = Vec::new();
    let mut nonblock = None;
    for lock in &query.locks {
        if lock.nonblock.is_some() {
            nonblock = lock.nonblock;
        }
        match &lock.of {
            None => chosen.clone_from(&from),
            Some(of) => {
                let n = table_name(of)?;
                let n = n.rsplit('.').next().unwrap_or(&n).to_string();
                let Some(t) = from.iter().find(|(by, _)| *by == n) else {
                    return Err(Error::UndefinedTable(format!(
                        "relation \"{n}\" in FOR UPDATE clause not found in FROM clause"
                    )));
                };
                if !chosen.iter().any(|(by, _)| *by == t.0) {
                    chosen.push(t.clone());
                }
            }
        }
    }
    // The query, its select list widened by each locked table's key columns.
    let mut widened = query.clone();
    widened.locks.clear();
    let skip = matches!(nonblock, Some(NonBlock::SkipLocked));
    // SKIP LOCKED counts LIMIT and OFFSET over the rows it could lock.
    let (limit, offset) = if skip {
        limits(widened.limit_clause.take())?
    } else {
        (None, 0)
    };
    let SetExpr::Select(wide) = widened.body.as_mut() else {
        return Err(Error::internal("not a select"));
    };
    // The select list's own columns come first (how many, the plan says: `*` is many).
    let first = wide.projection.len();
    let mut locked = Vec::new();
    for (by, def) in &chosen {
        locked.push(Locked {
            def: def.clone(),
            at: wide.projection.len() - first,
        });
        for &c in &def.primary_key {
            wide.projection.push(SelectItem::ExprWithAlias {
                expr: Expr::CompoundIdentifier(vec![
                    Ident::with_quote('"', by),
                    Ident::with_quote('"', &def.columns[c].name),
                ]),
                alias: Ident::with_quote('"', format!("__vg_lock_{}", wide.projection.len())),
            });
        }
    }
    loop {
        let seen = session.rows_seen();
        let plan = session
            .plan(Statement::Query(Box::new(widened.clone())))
            .await?;
        let schema = super::catalog::result_schema(&plan);
        let added = wide_columns(&locked);
        let width = schema.fields().len() - added;
        let df = session.ctx.execute_logical_plan(plan).await?;
        let batches = df.collect().await?;
        let mut kept: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut changed = false;
        let (mut skipped, mut taken) = (0, 0usize);
        for (b, batch) in batches.iter().enumerate() {
            if limit.is_some_and(|l| taken >= l) {
                break;
            }
            let mut rows = Vec::new();
            for r in 0..batch.num_rows() {
                if limit.is_some_and(|l| taken >= l) {
                    break;
                }
                if nonblock.is_none() {
                    // Waits below, table by table.
                    rows.push(r);
                    continue;
                }
                let names = lock_names(&locked, width, batch, r)?;
                match session.try_lock_rows(&names, seen) {
                    Some(c) => changed |= c,
                    None if skip => continue,
                    None => {
                        let t = names.first().map_or("", |n| n.0.as_str());
                        return Err(Error::Detailed {
                            code: "55P03",
                            message: format!("could not obtain lock on row in relation \"{t}\""),
                            detail: String::new(),
                        });
                    }
                }
                if skipped < offset {
                    skipped += 1;
                    continue;
                }
                taken += 1;
                rows.push(r);
            }
            kept.push((b, rows));
        }
        if nonblock.is_none() {
            changed = wait_for_locks(session, &locked, width, &batches, seen).await?;
        }
        if changed {
            continue;
        }
        let out_schema = Arc::new(Schema::new(schema.fields()[..width].to_vec()));
        let mut out = Vec::new();
        for (b, rows) in kept {
            let batch = &batches[b];
            let idx = datafusion::arrow::array::UInt32Array::from(
                rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            );
            let columns = batch.columns()[..width]
                .iter()
                .map(|c| datafusion::arrow::compute::take(c, &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::internal)?;
            out.push(RecordBatch::try_new(out_schema.clone(), columns).map_err(Error::internal)?);
        }
        let batch = datafusion::arrow::compute::concat_batches(&out_schema, &out)
            .map_err(Error::internal)?;
        return Ok(Output::batch(out_schema, batch));
    }
}

/// The locks of row `r`: each locked table's key, from the widened columns (none for a
/// table an outer join gave no row).
fn lock_names(
    locked: &[Locked],
    width: usize,
    batch: &RecordBatch,
    r: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut names = Vec::new();
    for l in locked {
        if let Some(key) = found_key(l, width, batch, r)? {
            names.push((l.def.name.clone(), keys::encode(&key)));
        }
    }
    Ok(names)
}

/// Table `l`'s key in row `r`, from the widened columns, in the key's types; `None` where
/// an outer join gave the table no row.
fn found_key(
    l: &Locked,
    width: usize,
    batch: &RecordBatch,
    r: usize,
) -> Result<Option<Vec<crate::types::Value>>> {
    let key: Vec<_> = (0..l.def.primary_key.len())
        .map(|i| value_from_array(batch.column(width + l.at + i), r))
        .collect::<Result<_>>()?;
    if key.iter().any(crate::types::Value::is_null) {
        return Ok(None);
    }
    key_in_types(&l.def, key).map(Some)
}

/// Lock every row of `batches`, waiting for their holders, table by table in name
/// order (one order for everyone): whether one of them changed since `seen`.
async fn wait_for_locks(
    session: &Session,
    locked: &[Locked],
    width: usize,
    batches: &[RecordBatch],
    seen: u64,
) -> Result<bool> {
    let mut order: Vec<&Locked> = locked.iter().collect();
    order.sort_by(|a, b| a.def.name.cmp(&b.def.name));
    let mut changed = false;
    for l in order {
        let mut found = Vec::new();
        for batch in batches {
            for r in 0..batch.num_rows() {
                found.extend(found_key(l, width, batch, r)?);
            }
        }
        changed |= session
            .lock_rows(&l.def, found.iter().map(Vec::as_slice), seen)
            .await?;
    }
    Ok(changed)
}

/// `LIMIT` and `OFFSET` of a SKIP LOCKED query, as numbers.
fn limits(clause: Option<LimitClause>) -> Result<(Option<usize>, usize)> {
    let number = |e: &Expr| -> Result<usize> {
        match e {
            Expr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => n.parse().ok(),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| {
            Error::FeatureNotSupported(
                "FOR UPDATE SKIP LOCKED takes a LIMIT and OFFSET that are numbers".into(),
            )
        })
    };
    match clause {
        None => Ok((None, 0)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => Ok((
            limit.as_ref().map(number).transpose()?,
            offset
                .as_ref()
                .map(|o| number(&o.value))
                .transpose()?
                .unwrap_or(0),
        )),
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            Ok((Some(number(&limit)?), number(&offset)?))
        }
        Some(_) => Err(Error::FeatureNotSupported(
            "LIMIT BY is not supported".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::stricter_lock_modes;

    #[test]
    fn weaker_lock_modes_become_the_parser_s_own() {
        assert_eq!(
            stricter_lock_modes("SELECT * FROM t WHERE id = 1 FOR NO KEY UPDATE").as_deref(),
            Some("SELECT * FROM t WHERE id = 1 FOR UPDATE")
        );
        assert_eq!(
            stricter_lock_modes("SELECT * FROM t FOR KEY SHARE").as_deref(),
            Some("SELECT * FROM t FOR SHARE")
        );
        assert_eq!(
            stricter_lock_modes("SELECT * FROM t FOR KEY SHARE OF t SKIP LOCKED").as_deref(),
            Some("SELECT * FROM t FOR SHARE OF t SKIP LOCKED")
        );
        // A string or a quoted name that says so is left alone.
        assert_eq!(stricter_lock_modes("SELECT 'for no key update'"), None);
        assert_eq!(
            stricter_lock_modes("SELECT \"key\" FROM t FOR UPDATE"),
            None
        );
    }
}
