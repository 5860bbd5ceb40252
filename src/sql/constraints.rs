//! CHECK and FOREIGN KEY constraints: declared in CREATE TABLE, enforced by every
//! statement that writes rows.
//!
//! - A CHECK's expression is compiled by the query engine against the table's columns
//!   and evaluated over the rows a statement writes, all at once; a row for which it is
//!   false is a 23514 (true or NULL pass, as in Postgres).
//! - A FOREIGN KEY (MATCH SIMPLE) is checked on the referencing side when rows are
//!   written: each distinct non-NULL value is looked up in the referenced table (by key
//!   when it references the primary key, else by a scan), as this session sees it (its
//!   block's writes included). On the referenced side, deleting rows or changing their
//!   referenced values finds the referencing rows (a scan of the referencing table) and
//!   refuses (NO ACTION, RESTRICT: 23503), deletes them (CASCADE) or sets their columns
//!   to NULL or their defaults (SET NULL, SET DEFAULT). A statement that cascades runs
//!   as one transaction block when it is not in one already.
//!
//! Concurrent writers are not serialised: a referencing row inserted through one
//! session while another deletes the row it references can be left without it (Postgres
//! takes a row lock for that; vectorgate has none).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::logical_expr::{Expr, lit};
use datafusion::sql::sqlparser::ast::{
    CheckConstraint, ConstraintReferenceMatchKind, DeferrableInitial, Expr as SqlExpr,
    ForeignKeyConstraint, ReferentialAction, Visit, Visitor,
};
use futures::TryStreamExt;

use crate::engine::Core;
use crate::error::{Error, Result};
use crate::store::{
    CheckDef, ColumnDef, ForeignKeyDef, RefAction, Row, TableDef, display_key_value, keys,
};
use crate::types::{ColumnType, Value, build_array, coerce, value_from_array};

use super::Session;
use super::statements::{ident_name, table_name};

/// A row in a DETAIL line, as Postgres prints a failing row: `(1, null, abc)`.
fn row_text(def: &TableDef, row: &[Value]) -> String {
    let cells: Vec<String> = def
        .visible()
        .into_iter()
        .map(|c| match &row[c] {
            Value::Null => "null".into(),
            other => display_key_value(other),
        })
        .collect();
    format!("({})", cells.join(", "))
}

fn names(def: &TableDef, cols: &[usize]) -> String {
    cols.iter()
        .map(|&c| def.columns[c].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn values_text(values: &[Value]) -> String {
    values
        .iter()
        .map(display_key_value)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every constraint name of a table (a new one must differ from them).
fn taken_names(def: &TableDef) -> HashSet<String> {
    let mut out: HashSet<String> = def.unique.iter().map(|u| u.name.clone()).collect();
    out.insert(def.pk_name());
    out.extend(def.checks.iter().map(|c| c.name.clone()));
    out.extend(def.foreign_keys.iter().map(|f| f.name.clone()));
    out
}

/// Postgres' choice of a constraint name: `base`, else `base1`, `base2`, ...
fn fresh_name(def: &TableDef, base: String) -> String {
    let taken = taken_names(def);
    if !taken.contains(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or(base)
}

/// The columns a CHECK expression names, each once, in order of appearance.
fn named_columns(def: &TableDef, expr: &SqlExpr) -> Vec<usize> {
    struct Names<'a>(&'a TableDef, Vec<usize>);
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> std::ops::ControlFlow<()> {
            let id = match e {
                SqlExpr::Identifier(id) => Some(id),
                SqlExpr::CompoundIdentifier(ids) => ids.last(),
                _ => None,
            };
            if let Some(c) = id.and_then(|id| self.0.column_index(&ident_name(id)))
                && !self.1.contains(&c)
            {
                self.1.push(c);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut names = Names(def, vec![]);
    let _ = expr.visit(&mut names);
    names.1
}

fn has_subquery(expr: &SqlExpr) -> bool {
    struct Sub(bool);
    impl Visitor for Sub {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> std::ops::ControlFlow<()> {
            if matches!(
                e,
                SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
            ) {
                self.0 = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut s = Sub(false);
    let _ = expr.visit(&mut s);
    s.0
}

/// The table's columns as the query engine sees them, each nullable (a CHECK sees rows
/// before NOT NULL has been tested on every path).
fn check_schema(def: &TableDef) -> Result<(Arc<Schema>, DFSchema)> {
    let fields: Vec<Field> = def.columns.iter().map(|c| c.arrow_field(true)).collect();
    let schema = Arc::new(Schema::new(fields));
    let df = DFSchema::try_from(schema.as_ref().clone())?;
    Ok((schema, df))
}

/// Add a CHECK constraint to `def` (CREATE TABLE, ALTER TABLE ADD CONSTRAINT): the
/// expression must be a boolean over the table's columns, without subqueries.
pub(crate) fn add_check(session: &Session, def: &mut TableDef, c: &CheckConstraint) -> Result<()> {
    if c.enforced == Some(false) {
        return Err(Error::FeatureNotSupported(
            "NOT ENFORCED constraints are not supported".into(),
        ));
    }
    if has_subquery(&c.expr) {
        return Err(Error::FeatureNotSupported(
            "cannot use subquery in check constraint".into(),
        ));
    }
    let text = c.expr.to_string();
    let (schema, dfschema) = check_schema(def)?;
    let expr = session.ctx.parse_sql_expr(&text, &dfschema)?;
    let phys = session.ctx.create_physical_expr(expr, &dfschema)?;
    let ty = phys.data_type(&schema)?;
    if ty != DataType::Boolean && ty != DataType::Null {
        return Err(Error::DatatypeMismatch(format!(
            "argument of CHECK must be type boolean, not type {}",
            sql_type_name(&ty)
        )));
    }
    let name = match &c.name {
        Some(n) => ident_name(n),
        None => {
            let cols = named_columns(def, &c.expr);
            let base = match cols.as_slice() {
                [one] => format!("{}_{}_check", def.relname(), def.columns[*one].name),
                _ => format!("{}_check", def.relname()),
            };
            fresh_name(def, base)
        }
    };
    if taken_names(def).contains(&name) {
        return Err(Error::DuplicateObject(format!(
            "constraint \"{name}\" for relation \"{}\" already exists",
            def.name
        )));
    }
    def.checks.push(CheckDef { name, expr: text });
    Ok(())
}

/// A query engine type as Postgres names it in an error.
pub(crate) fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// Whether values of these two column types can reference each other.
fn comparable(a: &ColumnType, b: &ColumnType) -> bool {
    use ColumnType::*;
    let int = |t: &ColumnType| matches!(t, SmallInt | Int | BigInt);
    a == b || (int(a) && int(b))
}

fn action(a: &Option<ReferentialAction>) -> RefAction {
    match a {
        None | Some(ReferentialAction::NoAction) => RefAction::NoAction,
        Some(ReferentialAction::Restrict) => RefAction::Restrict,
        Some(ReferentialAction::Cascade) => RefAction::Cascade,
        Some(ReferentialAction::SetNull) => RefAction::SetNull,
        Some(ReferentialAction::SetDefault) => RefAction::SetDefault,
    }
}

/// The positions of a FOREIGN KEY's own columns among `columns` (42703 for one missing).
pub(crate) fn key_columns(columns: &[ColumnDef], fk: &ForeignKeyConstraint) -> Result<Vec<usize>> {
    fk.columns
        .iter()
        .map(|id| {
            let n = ident_name(id);
            columns
                .iter()
                .position(|c| c.name == n)
                .ok_or(Error::UndefinedColumn(n))
        })
        .collect()
}

/// Add a FOREIGN KEY to `def` (`columns` given: a column constraint names its own).
/// The referenced table must exist (or be `def` itself) and the referenced columns be
/// its primary key or one of its UNIQUE constraints.
pub(crate) fn add_foreign_key(
    session: &Session,
    def: &mut TableDef,
    columns: &[usize],
    fk: &ForeignKeyConstraint,
) -> Result<()> {
    if matches!(
        fk.match_kind,
        Some(ConstraintReferenceMatchKind::Full | ConstraintReferenceMatchKind::Partial)
    ) {
        return Err(Error::FeatureNotSupported(
            "only MATCH SIMPLE foreign keys are supported".into(),
        ));
    }
    let initially_deferred = fk
        .characteristics
        .as_ref()
        .is_some_and(|c| matches!(c.initially, Some(DeferrableInitial::Deferred)));
    if let Some(ch) = &fk.characteristics {
        if ch.enforced == Some(false) {
            return Err(Error::FeatureNotSupported(
                "NOT ENFORCED constraints are not supported".into(),
            ));
        }
        if matches!(ch.initially, Some(DeferrableInitial::Deferred)) {
            session.notices.push(
                "INITIALLY DEFERRED is not supported: vectorgate checks this foreign key at each statement, not at COMMIT".to_string(),
            );
        }
    }
    let on_delete = action(&fk.on_delete);
    let on_update = action(&fk.on_update);
    if !matches!(on_update, RefAction::NoAction | RefAction::Restrict) {
        return Err(Error::FeatureNotSupported(format!(
            "ON UPDATE {} is not supported (NO ACTION and RESTRICT are)",
            on_update.sql()
        )));
    }
    let target = table_name(&fk.foreign_table)?;
    let parent: Arc<TableDef> = if target == def.name {
        Arc::new(def.clone())
    } else {
        session.engine.core.table(&target)?
    };
    let referenced: Vec<usize> = if fk.referred_columns.is_empty() {
        parent.primary_key.clone()
    } else {
        fk.referred_columns
            .iter()
            .map(|i| {
                let n = ident_name(i);
                parent
                    .column_index(&n)
                    .ok_or_else(|| Error::UndefinedColumn(n.clone()))
            })
            .collect::<Result<_>>()?
    };
    if referenced.len() != columns.len() {
        return Err(Error::InvalidForeignKey(
            "number of referencing and referenced columns for foreign key disagree".into(),
        ));
    }
    let mut set = referenced.clone();
    set.sort_unstable();
    let keyed = |cols: &[usize]| {
        let mut c = cols.to_vec();
        c.sort_unstable();
        c == set
    };
    if !keyed(&parent.primary_key) && !parent.unique.iter().any(|u| keyed(&u.columns)) {
        return Err(Error::InvalidForeignKey(format!(
            "there is no unique constraint matching given keys for referenced table \"{}\"",
            parent.name
        )));
    }
    let name = match &fk.name {
        Some(n) => ident_name(n),
        None => {
            let cols: Vec<&str> = columns
                .iter()
                .map(|&c| def.columns[c].name.as_str())
                .collect();
            fresh_name(def, format!("{}_{}_fkey", def.relname(), cols.join("_")))
        }
    };
    for (&c, &p) in columns.iter().zip(&referenced) {
        let (a, b) = (&def.columns[c], &parent.columns[p]);
        if !comparable(&a.ty, &b.ty) {
            return Err(Error::Detailed {
                code: "42804",
                message: format!("foreign key constraint \"{name}\" cannot be implemented"),
                detail: format!(
                    "Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}.",
                    a.name,
                    b.name,
                    a.ty.sql_name(),
                    b.ty.sql_name()
                ),
            });
        }
    }
    if taken_names(def).contains(&name) {
        return Err(Error::DuplicateObject(format!(
            "constraint \"{name}\" for relation \"{}\" already exists",
            def.name
        )));
    }
    def.foreign_keys.push(ForeignKeyDef {
        name,
        columns: columns.to_vec(),
        table: parent.name.clone(),
        referenced: referenced
            .iter()
            .map(|&p| parent.columns[p].name.clone())
            .collect(),
        on_delete,
        on_update,
        deferrable: initially_deferred
            || fk
                .characteristics
                .as_ref()
                .is_some_and(|c| c.deferrable == Some(true)),
        initially_deferred,
    });
    Ok(())
}

/// The FOREIGN KEYs that reference `table`, with their tables.
pub(crate) fn referencing(core: &Core, table: &str) -> Vec<(Arc<TableDef>, ForeignKeyDef)> {
    let mut out: Vec<(Arc<TableDef>, ForeignKeyDef)> = core
        .catalog()
        .into_values()
        .flat_map(|d| {
            d.foreign_keys
                .iter()
                .filter(|f| f.table == table)
                .map(|f| (d.clone(), f.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_by(|a, b| (&a.0.name, &a.1.name).cmp(&(&b.0.name, &b.1.name)));
    out
}

/// Positions in `parent` of a foreign key's referenced columns.
fn referenced_columns(parent: &TableDef, fk: &ForeignKeyDef) -> Result<Vec<usize>> {
    fk.referenced
        .iter()
        .map(|n| {
            parent
                .column_index(n)
                .ok_or_else(|| Error::internal(format!("foreign key {} lost column {n}", fk.name)))
        })
        .collect()
}

/// The values of `cols` in `row`; `None` when one is NULL (MATCH SIMPLE: the row
/// references nothing).
fn tuple(row: &[Value], cols: &[usize]) -> Option<Vec<Value>> {
    let t: Vec<Value> = cols.iter().map(|&c| row[c].clone()).collect();
    (!t.iter().any(Value::is_null)).then_some(t)
}

/// Test the CHECK constraints and the FOREIGN KEYs of rows about to be written.
pub(crate) async fn check_written(session: &Session, def: &TableDef, rows: &[Row]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    check_rows(session, def, rows)?;
    for fk in &def.foreign_keys {
        check_reference(session, def, fk, rows).await?;
    }
    Ok(())
}

fn check_rows(session: &Session, def: &TableDef, rows: &[Row]) -> Result<()> {
    if def.checks.is_empty() {
        return Ok(());
    }
    let (schema, dfschema) = check_schema(def)?;
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let refs: Vec<&Row> = rows.iter().collect();
    let batch = super::tables::rows_to_batch(def, &schema, &all, &refs)?;
    for c in &def.checks {
        let expr = session.ctx.parse_sql_expr(&c.expr, &dfschema)?;
        let phys = session.ctx.create_physical_expr(expr, &dfschema)?;
        let out = phys.evaluate(&batch)?.into_array(batch.num_rows())?;
        let Some(b) = out.as_boolean_opt() else {
            continue;
        };
        if let Some(i) = (0..b.len()).find(|&i| b.is_valid(i) && !b.value(i)) {
            return Err(Error::CheckViolation {
                message: format!(
                    "new row for relation \"{}\" violates check constraint \"{}\"",
                    def.name, c.name
                ),
                detail: format!("Failing row contains {}.", row_text(def, &rows[i])),
                table: def.name.clone(),
                constraint: c.name.clone(),
            });
        }
    }
    Ok(())
}

/// Each row's referenced row must exist (rows of this statement count, for a table
/// that references itself).
async fn check_reference(
    session: &Session,
    def: &TableDef,
    fk: &ForeignKeyDef,
    rows: &[Row],
) -> Result<()> {
    let parent = if fk.table == def.name {
        Arc::new(def.clone())
    } else {
        session.engine.core.table(&fk.table)?
    };
    let referenced = referenced_columns(&parent, fk)?;
    let mut seen = HashSet::new();
    let mut wanted: Vec<Vec<Value>> = Vec::new();
    for r in rows {
        let Some(t) = tuple(r, &fk.columns) else {
            continue;
        };
        // Coerced to the referenced columns' types (an int referencing a bigint).
        let t: Vec<Value> = t
            .into_iter()
            .zip(&referenced)
            .map(|(v, &p)| coerce(v, &parent.columns[p].ty))
            .collect::<Result<_>>()?;
        if seen.insert(keys::encode(&t)) {
            wanted.push(t);
        }
    }
    if fk.table == def.name {
        let own: HashSet<Vec<u8>> = rows
            .iter()
            .filter_map(|r| tuple(r, &referenced))
            .map(|t| keys::encode(&t))
            .collect();
        wanted.retain(|t| !own.contains(&keys::encode(t)));
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let found = find(session, &parent, &referenced, &wanted).await?;
    let present: HashSet<Vec<u8>> = found
        .iter()
        .filter_map(|r| tuple(r, &referenced))
        .map(|t| keys::encode(&t))
        .collect();
    if let Some(missing) = wanted.iter().find(|t| !present.contains(&keys::encode(t))) {
        return Err(Error::ForeignKeyViolation {
            message: format!(
                "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                def.name, fk.name
            ),
            detail: format!(
                "Key ({})=({}) is not present in table \"{}\".",
                names(def, &fk.columns),
                values_text(missing),
                parent.name
            ),
            table: def.name.clone(),
            constraint: fk.name.clone(),
        });
    }
    Ok(())
}

/// The rows of `def` whose `cols` hold one of `tuples`, as this session sees them: by
/// key when `cols` are the primary key, else by a filtered scan.
async fn find(
    session: &Session,
    def: &TableDef,
    cols: &[usize],
    tuples: &[Vec<Value>],
) -> Result<Vec<Row>> {
    let mut sorted = cols.to_vec();
    sorted.sort_unstable();
    let mut pk = def.primary_key.clone();
    pk.sort_unstable();
    if sorted == pk {
        let keys_: Vec<Vec<Value>> = tuples
            .iter()
            .map(|t| {
                def.primary_key
                    .iter()
                    .map(|k| t[cols.iter().position(|c| c == k).unwrap_or(0)].clone())
                    .collect()
            })
            .collect();
        return Ok(session
            .get_rows(def, &keys_)
            .await?
            .into_iter()
            .flatten()
            .collect());
    }
    let mut out = Vec::new();
    for chunk in tuples.chunks(256) {
        out.extend(scan(session, def, cols, chunk).await?);
    }
    Ok(out)
}

fn column_expr(c: &ColumnDef) -> Expr {
    Expr::Column(Column::new_unqualified(c.name.clone()))
}

fn literal(c: &ColumnDef, v: &Value) -> Result<Expr> {
    let array = build_array(&c.ty, std::iter::once(v));
    Ok(lit(ScalarValue::try_from_array(&array, 0)?))
}

async fn scan(
    session: &Session,
    def: &TableDef,
    cols: &[usize],
    tuples: &[Vec<Value>],
) -> Result<Vec<Row>> {
    let filter = if let [c] = cols {
        let column = &def.columns[*c];
        let list = tuples
            .iter()
            .map(|t| literal(column, &t[0]))
            .collect::<Result<Vec<_>>>()?;
        column_expr(column).in_list(list, false)
    } else {
        let mut any: Option<Expr> = None;
        for t in tuples {
            let mut all: Option<Expr> = None;
            for (&c, v) in cols.iter().zip(t) {
                let column = &def.columns[c];
                let e = column_expr(column).eq(literal(column, v)?);
                all = Some(match all {
                    None => e,
                    Some(a) => a.and(e),
                });
            }
            if let Some(all) = all {
                any = Some(match any {
                    None => all,
                    Some(a) => a.or(all),
                });
            }
        }
        any.unwrap_or(lit(false))
    };
    rows_where(session, def, filter).await
}

/// The rows of `def` that `filter` (over its columns) holds for.
async fn rows_where(session: &Session, def: &TableDef, filter: Expr) -> Result<Vec<Row>> {
    let df = session
        .ctx
        .table(TableReference::bare(def.name.clone()))
        .await?
        .filter(filter)?;
    let batches: Vec<_> = df.execute_stream().await?.try_collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&def.columns)
                    .map(|(a, c)| coerce(value_from_array(a, r)?, &c.ty))
                    .collect::<Result<Row>>()?,
            );
        }
    }
    Ok(out)
}

/// Why rows of a referenced table go: deleted, or moved to another key by an UPDATE
/// (whose new rows are given: a value they still hold is still referenced).
#[derive(Clone, Copy)]
pub(crate) enum Removal<'a> {
    Delete,
    Move(&'a [Row]),
    /// TRUNCATE: every table that references this one goes too; no action applies.
    Truncate,
}

/// What a removal does to referencing rows once it stands.
pub(crate) enum FollowUp {
    Delete(Arc<TableDef>, Vec<Vec<Value>>),
    Write(Arc<TableDef>, Vec<Row>),
    /// NO ACTION: once the statement's cascades are done, no row may reference the
    /// values gone (`gone`, in the referencing columns' types).
    Verify {
        child: Arc<TableDef>,
        fk: ForeignKeyDef,
        gone: Vec<Vec<Value>>,
    },
}

impl FollowUp {
    /// Cascades first, the NO ACTION checks after them.
    pub(crate) fn order(&self) -> u8 {
        match self {
            FollowUp::Delete(..) | FollowUp::Write(..) => 0,
            FollowUp::Verify { .. } => 1,
        }
    }
}

/// The NO ACTION check of a removal: 23503 if a row still references a value gone.
pub(crate) async fn verify(
    session: &Session,
    def: &TableDef,
    child: &TableDef,
    fk: &ForeignKeyDef,
    gone: &[Vec<Value>],
) -> Result<()> {
    let rows = find(session, child, &fk.columns, gone).await?;
    match rows.first() {
        None => Ok(()),
        Some(first) => Err(still_referenced(
            def,
            &referenced_columns(def, fk)?,
            child,
            fk,
            first,
        )),
    }
}

/// Before rows of `def` are removed: the referencing rows they leave behind. RESTRICT
/// refuses (23503); CASCADE, SET NULL and SET DEFAULT come back as the writes to make
/// after the removal, NO ACTION as the check to make after those.
pub(crate) async fn before_removal(
    session: &Session,
    def: &TableDef,
    olds: &[Row],
    why: Removal<'_>,
) -> Result<Vec<FollowUp>> {
    let mut out = Vec::new();
    if olds.is_empty() {
        return Ok(out);
    }
    let removed: HashSet<Vec<u8>> = olds.iter().map(|r| keys::encode(&def.key_of(r))).collect();
    for (child, fk) in referencing(&session.engine.core, &def.name) {
        let referenced = referenced_columns(def, &fk)?;
        let kept: HashSet<Vec<u8>> = match why {
            Removal::Delete | Removal::Truncate => HashSet::new(),
            Removal::Move(news) => news
                .iter()
                .filter_map(|r| tuple(r, &referenced))
                .map(|t| keys::encode(&t))
                .collect(),
        };
        let mut seen = HashSet::new();
        let mut gone: Vec<Vec<Value>> = Vec::new();
        for r in olds {
            let Some(t) = tuple(r, &referenced) else {
                continue;
            };
            let enc = keys::encode(&t);
            if kept.contains(&enc) || !seen.insert(enc) {
                continue;
            }
            let t: Vec<Value> = t
                .into_iter()
                .zip(&fk.columns)
                .map(|(v, &c)| coerce(v, &child.columns[c].ty))
                .collect::<Result<_>>()?;
            gone.push(t);
        }
        if gone.is_empty() {
            continue;
        }
        let mut rows = find(session, &child, &fk.columns, &gone).await?;
        if child.name == def.name {
            // Rows removed by this same statement reference nothing any more.
            rows.retain(|r| !removed.contains(&keys::encode(&child.key_of(r))));
        }
        let Some(first) = rows.first() else {
            continue;
        };
        let act = match why {
            Removal::Delete | Removal::Truncate => fk.on_delete,
            Removal::Move(_) => fk.on_update,
        };
        match act {
            RefAction::Restrict => {
                return Err(still_referenced(def, &referenced, &child, &fk, first));
            }
            RefAction::NoAction => out.push(FollowUp::Verify { child, fk, gone }),
            RefAction::Cascade => {
                let keys_ = rows.iter().map(|r| child.key_of(r)).collect();
                out.push(FollowUp::Delete(child, keys_));
            }
            RefAction::SetNull | RefAction::SetDefault => {
                let defaults = if act == RefAction::SetDefault {
                    super::defaults::Defaults::prepare(
                        session,
                        &child,
                        fk.columns.iter().copied(),
                        rows.len(),
                    )
                    .await?
                } else {
                    Default::default()
                };
                // A row two foreign keys change is written once, with both changes.
                let at = out
                    .iter()
                    .position(|f| matches!(f, FollowUp::Write(d, _) if d.name == child.name));
                let at = at.unwrap_or_else(|| {
                    out.push(FollowUp::Write(child.clone(), vec![]));
                    out.len() - 1
                });
                let FollowUp::Write(_, written) = &mut out[at] else {
                    continue;
                };
                for r in rows {
                    let key = child.key_of(&r);
                    let i = match written.iter().position(|w| child.key_of(w) == key) {
                        Some(i) => i,
                        None => {
                            written.push(r);
                            written.len() - 1
                        }
                    };
                    for &c in &fk.columns {
                        written[i][c] = Value::Null;
                    }
                    defaults.fill(&mut written[i], &[])?;
                }
            }
        }
    }
    Ok(out)
}

fn still_referenced(
    def: &TableDef,
    referenced: &[usize],
    child: &TableDef,
    fk: &ForeignKeyDef,
    row: &[Value],
) -> Error {
    let values: Vec<Value> = fk.columns.iter().map(|&c| row[c].clone()).collect();
    Error::ForeignKeyViolation {
        message: format!(
            "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
            def.name, fk.name, child.name
        ),
        detail: format!(
            "Key ({})=({}) is still referenced from table \"{}\".",
            names(def, referenced),
            values_text(&values),
            child.name
        ),
        table: child.name.clone(),
        constraint: fk.name.clone(),
    }
}

/// Changes to rows of a referenced table that keep their keys (UPDATE, ON CONFLICT DO
/// UPDATE) but change referenced values: refused while a row references the old value
/// (ON UPDATE is NO ACTION or RESTRICT; the others are refused at CREATE TABLE).
pub(crate) async fn check_updated(
    session: &Session,
    def: &TableDef,
    olds: &[Option<Row>],
    news: &[Row],
) -> Result<()> {
    let changed: Vec<Row> = olds
        .iter()
        .zip(news)
        .filter_map(|(o, n)| o.as_ref().filter(|o| *o != n).cloned())
        .collect();
    // ON UPDATE actions other than NO ACTION/RESTRICT are refused when declared: what
    // comes back are NO ACTION checks, made now (the update cascades nothing).
    for f in before_removal(session, def, &changed, Removal::Move(news)).await? {
        if let FollowUp::Verify { child, fk, gone } = f {
            verify(session, def, &child, &fk, &gone).await?;
        }
    }
    Ok(())
}

/// The foreign keys of other tables that reference `column` of `def` (DROP COLUMN
/// needs CASCADE for them; the table's own constraints on it go with it).
pub(crate) fn column_references(
    core: &Core,
    def: &TableDef,
    column: usize,
) -> Vec<(Arc<TableDef>, ForeignKeyDef)> {
    let name = &def.columns[column].name;
    referencing(core, &def.name)
        .into_iter()
        .filter(|(c, f)| c.name != def.name && f.referenced.contains(name))
        .collect()
}

/// The error for dropping a table others reference, without CASCADE.
/// `what` is dropped, the dependents depend on `on` (the same, or the index behind a
/// constraint).
pub(crate) fn dependents_error(
    what: &str,
    on: &str,
    dependents: &[(Arc<TableDef>, ForeignKeyDef)],
) -> Error {
    let detail = dependents
        .iter()
        .map(|(c, f)| format!("constraint {} on table {} depends on {on}", f.name, c.name))
        .collect::<Vec<_>>()
        .join("\n");
    Error::DependentObjects {
        message: format!("cannot drop {what} because other objects depend on it"),
        detail,
    }
}

fn parse_check(text: &str) -> Option<SqlExpr> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// Whether a CHECK's expression names the column `column` of `def`.
pub(crate) fn check_uses(def: &TableDef, check: &CheckDef, column: usize) -> bool {
    expr_uses(def, &check.expr, column)
}

/// Whether an expression kept as text (a CHECK's, an index key's) names the column
/// `column` of `def` (or cannot be read back).
pub(crate) fn expr_uses(def: &TableDef, text: &str, column: usize) -> bool {
    parse_check(text).is_none_or(|e| named_columns(def, &e).contains(&column))
}

/// A CHECK's expression with the column `from` called `to`.
pub(crate) fn renamed_in_check(text: &str, from: &str, to: &str) -> String {
    use datafusion::sql::sqlparser::ast::{Ident, VisitMut, VisitorMut};
    struct Rename<'a>(&'a str, &'a str);
    impl VisitorMut for Rename<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            let id = match e {
                SqlExpr::Identifier(id) => Some(id),
                SqlExpr::CompoundIdentifier(ids) => ids.last_mut(),
                _ => None,
            };
            if let Some(id) = id
                && ident_name(id) == self.0
            {
                let plain = self
                    .1
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !self.1.starts_with(|c: char| c.is_ascii_digit());
                *id = if plain {
                    Ident::new(self.1)
                } else {
                    Ident::with_quote('"', self.1)
                };
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let Some(mut e) = parse_check(text) else {
        return text.to_string();
    };
    let _ = VisitMut::visit(&mut e, &mut Rename(from, to));
    e.to_string()
}

/// Drop foreign keys of other tables (DROP ... CASCADE of what they reference), each
/// with a NOTICE.
pub(crate) async fn drop_foreign_keys(
    session: &Session,
    dependents: &[(Arc<TableDef>, ForeignKeyDef)],
) -> Result<()> {
    let core = &session.engine.core;
    for (child, fk) in dependents {
        session.notices.push(format!(
            "drop cascades to constraint {} on table {}",
            fk.name, child.name
        ));
    }
    let mut tables: Vec<&Arc<TableDef>> = dependents.iter().map(|(c, _)| c).collect();
    tables.dedup_by(|a, b| a.name == b.name);
    for child in tables {
        let Ok(current) = core.table(&child.name) else {
            continue;
        };
        let mut new = (*current).clone();
        new.foreign_keys.retain(|f| {
            !dependents
                .iter()
                .any(|(c, d)| c.name == child.name && d.name == f.name)
        });
        crate::engine::ddl::alter_columns(core, &current, new, false).await?;
    }
    Ok(())
}

/// Add a UNIQUE constraint to `def` (none if the primary key or another UNIQUE has
/// these columns already, as Postgres makes one index for both).
pub(crate) fn add_unique(def: &mut TableDef, name: Option<String>, cols: Vec<usize>) -> Result<()> {
    if cols == def.primary_key || def.unique.iter().any(|u| u.columns == cols) {
        return Ok(());
    }
    if cols.iter().any(|&c| def.columns[c].ty.is_vector()) {
        return Err(Error::FeatureNotSupported(
            "UNIQUE on a vector column is not supported".into(),
        ));
    }
    let name = match name {
        Some(n) => n,
        None => {
            let names: Vec<&str> = cols.iter().map(|&c| def.columns[c].name.as_str()).collect();
            fresh_name(def, format!("{}_{}_key", def.relname(), names.join("_")))
        }
    };
    if taken_names(def).contains(&name) {
        return Err(Error::DuplicateTable(name));
    }
    def.unique.push(crate::store::UniqueDef {
        name,
        columns: cols,
        space: crate::engine::unique::new_space(),
        index_only: false,
    });
    Ok(())
}

/// Every row of a table, as this session sees it.
pub(crate) async fn all_rows(session: &Session, def: &TableDef) -> Result<Vec<Row>> {
    rows_where(session, def, lit(true)).await
}

/// Claim the values the stored rows hold for UNIQUE constraints just added (`def` has
/// them): 23505 if two rows share one, and nothing is left claimed then.
pub(crate) async fn claim_stored(
    session: &Session,
    def: &TableDef,
    added: Vec<crate::store::UniqueDef>,
) -> Result<()> {
    let core = &session.engine.core;
    let rows = all_rows(session, def).await?;
    let mut only = def.clone();
    only.unique = added;
    let pairs: Vec<(&Row, Option<&Row>)> = rows.iter().map(|r| (r, None)).collect();
    match crate::engine::unique::claim(core, &only, None, &pairs).await {
        Ok(_) => Ok(()),
        Err(Error::UniqueViolation {
            detail,
            table,
            constraint,
            ..
        }) => Err(Error::UniqueViolation {
            message: format!("could not create unique index \"{constraint}\""),
            detail: detail.replace("already exists.", "is duplicated."),
            table,
            constraint,
        }),
        Err(e) => Err(e),
    }
}

/// The columns a CHECK names (for the catalog's `conkey`).
pub(crate) fn check_columns(def: &TableDef, check: &CheckDef) -> Vec<usize> {
    parse_check(&check.expr)
        .map(|e| named_columns(def, &e))
        .unwrap_or_default()
}

/// A CHECK's expression as Postgres prints it unprettily (`pg_get_constraintdef(oid)`,
/// `information_schema.check_clauses`): every operator application in parentheses,
/// the parentheses the user wrote dropped.
pub(crate) fn fully_parenthesized(text: &str) -> String {
    fn show(e: &SqlExpr) -> String {
        match e {
            SqlExpr::Nested(inner) => show(inner),
            SqlExpr::BinaryOp { left, op, right } => {
                format!("({} {op} {})", show(left), show(right))
            }
            SqlExpr::UnaryOp { op, expr } => format!("({op} {})", show(expr)),
            SqlExpr::IsNull(inner) => format!("({} IS NULL)", show(inner)),
            SqlExpr::IsNotNull(inner) => format!("({} IS NOT NULL)", show(inner)),
            other => other.to_string(),
        }
    }
    parse_check(text).map_or_else(
        || format!("({text})"),
        |e| {
            let shown = show(&e);
            if shown.starts_with('(') {
                shown
            } else {
                format!("({shown})")
            }
        },
    )
}

/// The setting [`set_constraints_statements`] carries a `SET CONSTRAINTS` in.
pub const SET_CONSTRAINTS: &str = "vg_set_constraints";

/// Each `SET CONSTRAINTS {ALL | name, ...} {IMMEDIATE | DEFERRED}` in `sql` (which the
/// SQL parser does not read; Django sends one before it drops a foreign key) as `SET
/// vg_set_constraints = 'names mode'`, which [`set_constraints`] carries out. `None`
/// when there is none.
pub fn set_constraints_statements(sql: &str) -> Option<String> {
    static SET: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?is)(^|;)(\s*)SET\s+CONSTRAINTS\s+([^;]+?)\s+(IMMEDIATE|DEFERRED)\s*(;|$)",
        )
        .expect("a valid pattern")
    });
    if !super::pgvector::mentions(sql, "constraints") || !SET.is_match(sql) {
        return None;
    }
    // One at a time: a match takes the `;` after it, which the next one starts at.
    let mut out = sql.to_string();
    while SET.is_match(&out) {
        out = SET
            .replace(&out, |c: &regex::Captures| {
                format!(
                    "{}{}SET {SET_CONSTRAINTS} = '{} {}'{}",
                    &c[1],
                    &c[2],
                    c[3].replace('\'', "''"),
                    c[4].to_ascii_uppercase(),
                    &c[5]
                )
            })
            .into_owned();
    }
    Some(out)
}

/// `SET CONSTRAINTS names mode` (`text` as [`set_constraints_statements`] carries it):
/// every constraint here is checked at the end of each statement, so IMMEDIATE changes
/// nothing and DEFERRED is accepted with a NOTICE (as `INITIALLY DEFERRED` is). A name
/// no table has is 42704; DEFERRED of one not declared DEFERRABLE (only foreign keys
/// can be) is 42809; outside a transaction block Postgres' WARNING.
pub(super) fn set_constraints(session: &Session, text: &str) -> Result<()> {
    let text = text.trim().trim_matches('\'');
    let (names, mode) = text.rsplit_once(' ').unwrap_or((text, ""));
    if !names.trim().eq_ignore_ascii_case("all") {
        let tables = session.engine.core.tables();
        for name in names.split(',') {
            let name = name.trim();
            // A schema-qualified name: the constraint's own part.
            let last = name.rsplit('.').next().unwrap_or(name);
            let name = if last.starts_with('"') {
                last.trim_matches('"').to_string()
            } else {
                last.to_ascii_lowercase()
            };
            let deferrable = tables
                .iter()
                .flat_map(|t| &t.foreign_keys)
                .find(|f| f.name == name)
                .map(|f| f.deferrable);
            let known = deferrable.is_some()
                || tables.iter().any(|t| {
                    t.pk_name() == name
                        || t.unique.iter().any(|u| u.name == name)
                        || t.checks.iter().any(|c| c.name == name)
                });
            if !known {
                return Err(Error::UndefinedObject(format!(
                    "constraint \"{name}\" does not exist"
                )));
            }
            if mode.eq_ignore_ascii_case("DEFERRED") && deferrable != Some(true) {
                return Err(Error::Detailed {
                    code: "42809",
                    message: format!("constraint \"{name}\" is not deferrable"),
                    detail: String::new(),
                });
            }
        }
    }
    if !session.tx.active() {
        session.notices.push_warning(
            "25P01",
            "SET CONSTRAINTS can only be used in transaction blocks",
        );
    }
    if mode == "DEFERRED" {
        session.notices.push(
            "SET CONSTRAINTS ... DEFERRED changes nothing here: vectorgate checks every constraint at each statement, not at COMMIT".to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_constraints_becomes_a_setting_each_time_it_appears() {
        assert_eq!(
            set_constraints_statements(
                "SET CONSTRAINTS \"a_fk\" IMMEDIATE; ALTER TABLE t DROP CONSTRAINT \"a_fk\""
            )
            .as_deref(),
            Some(
                "SET vg_set_constraints = '\"a_fk\" IMMEDIATE'; ALTER TABLE t DROP CONSTRAINT \"a_fk\""
            )
        );
        assert_eq!(
            set_constraints_statements(
                "set constraints all deferred;SET CONSTRAINTS x, s.y IMMEDIATE"
            )
            .as_deref(),
            Some(
                "SET vg_set_constraints = 'all DEFERRED';SET vg_set_constraints = 'x, s.y IMMEDIATE'"
            )
        );
        assert_eq!(
            set_constraints_statements("SELECT 'SET CONSTRAINTS' AS constraints"),
            None
        );
    }
}
