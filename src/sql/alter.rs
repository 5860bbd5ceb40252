//! `ALTER TABLE`: index options, and changes to a live table's columns (ADD, DROP,
//! RENAME, ALTER COLUMN ... SET/DROP DEFAULT, SET/DROP NOT NULL, TYPE to the same
//! stored type), in both row stores, without losing a row.

use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnOption, Ident, SqlOption,
};

use super::statements::{ident_name, option_text, parse_type, table_name, unique_not_enforced};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::options::{ALTERABLE_OPTIONS, IndexOptions};
use crate::store::{ColumnDef, TableDef};
use crate::types::ColumnType;

const DONE: &str = "ALTER TABLE";

/// One ALTER TABLE statement: a list of changes of one kind (index options, added
/// columns, dropped columns, or changes to columns' names, defaults and NOT NULL).
pub(super) async fn alter_table(session: &Session, at: &AlterTable) -> Result<Output> {
    let shared = &session.engine.core;
    let name = table_name(&at.name)?;
    let def = match shared.table(&name) {
        Ok(d) => d,
        Err(e) if at.if_exists => {
            skipping(session, e);
            return Ok(Output::Command(DONE.into()));
        }
        Err(e) => return Err(e),
    };
    let ops = &at.operations;
    let all = |f: fn(&AlterTableOperation) -> bool| ops.iter().all(f);
    if all(|op| matches!(op, AlterTableOperation::AddColumn { .. })) {
        add_columns(session, &def, ops).await
    } else if all(|op| matches!(op, AlterTableOperation::SetOptionsParens { .. })) {
        set_options(session, &def, ops).await
    } else if all(|op| matches!(op, AlterTableOperation::DropColumn { .. })) {
        drop_columns(session, &def, ops).await
    } else if all(|op| {
        matches!(
            op,
            AlterTableOperation::AlterColumn { .. } | AlterTableOperation::RenameColumn { .. }
        )
    }) {
        alter_columns(session, &def, ops).await
    } else if let Some(op) = ops
        .iter()
        .find(|op| matches!(op, AlterTableOperation::RenameTable { .. }))
    {
        Err(Error::FeatureNotSupported(format!(
            "ALTER TABLE ... {op} is not supported yet: a table's points in the vector index are named after it"
        )))
    } else {
        Err(Error::FeatureNotSupported(format!(
            "ALTER TABLE ... {} is not supported: ADD COLUMN, DROP COLUMN, RENAME COLUMN, ALTER COLUMN (SET/DROP DEFAULT, SET/DROP NOT NULL, TYPE of the same storage) and SET (index options) are, one kind per statement",
            ops.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// What IF [NOT] EXISTS turns an error into: a NOTICE of it, as Postgres words it.
fn skipping(session: &Session, e: Error) {
    session.notices.push(format!("{e}, skipping"));
}

/// `ALTER TABLE t SET (option = value, ...)`: change a table's index options. The
/// index is changed first (so a failure leaves everything as it was), then the catalog.
async fn set_options(
    session: &Session,
    def: &TableDef,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    let mut new = def.clone();
    for op in ops {
        let AlterTableOperation::SetOptionsParens { options } = op else {
            continue;
        };
        for o in options {
            let SqlOption::KeyValue { key, value } = o else {
                return Err(Error::FeatureNotSupported(format!(
                    "table option {o} is not supported"
                )));
            };
            let key = key.value.to_ascii_lowercase();
            if !ALTERABLE_OPTIONS.contains(&key.as_str()) {
                return Err(Error::FeatureNotSupported(format!(
                    "option {key} cannot be changed by ALTER TABLE (changeable: {})",
                    ALTERABLE_OPTIONS.join(", ")
                )));
            }
            new.options.insert(key, option_text(value));
        }
    }
    def.require_vector("ALTER TABLE ... SET (index options)")?;
    if new
        .options
        .get("quantization")
        .is_some_and(|q| q != "product")
    {
        new.options.remove("compression");
    }
    IndexOptions::parse(&new.options)?;
    crate::engine::ddl::set_options(&session.engine.core, new, &session.notices).await?;
    Ok(Output::Command(DONE.into()))
}

/// `DROP [COLUMN] [IF EXISTS] c [, ...] [CASCADE | RESTRICT]`: the values go from every
/// stored row; a table whose vector column goes keeps its rows and loses its index; the
/// sequence a serial or identity column owns goes with it. A key column cannot go (a
/// table here always has its primary key): 0A000.
async fn drop_columns(
    session: &Session,
    def: &TableDef,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    let mut dropped: Vec<usize> = Vec::new();
    for op in ops {
        let AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } = op
        else {
            continue;
        };
        for c in column_names {
            let cname = ident_name(c);
            let Some(i) = def.column_index(&cname) else {
                let missing = Error::UndefinedColumnOf(cname, def.name.clone());
                if *if_exists {
                    skipping(session, missing);
                    continue;
                }
                return Err(missing);
            };
            if def.primary_key.contains(&i) {
                return Err(Error::FeatureNotSupported(format!(
                    "cannot drop column \"{cname}\": it is part of the primary key of \"{}\", which a table here always keeps",
                    def.name
                )));
            }
            if !dropped.contains(&i) {
                dropped.push(i);
            }
        }
    }
    if dropped.is_empty() {
        return Ok(Output::Command(DONE.into()));
    }
    let new = without_columns(def, &dropped);
    let core = &session.engine.core;
    // The sequences the dropped columns own go with them (as in Postgres).
    let owned: Vec<String> = core
        .sequence_defs()
        .iter()
        .filter(|s| {
            s.owned_by.as_ref().is_some_and(|(t, c)| {
                *t == def.name && dropped.iter().any(|&i| def.columns[i].name == *c)
            })
        })
        .map(|s| s.name.clone())
        .collect();
    crate::engine::ddl::drop_columns(core, def, new, &dropped).await?;
    for s in owned {
        core.drop_sequence(&s).await?;
    }
    Ok(Output::Command(DONE.into()))
}

/// `def` without the columns at `dropped`: the key and vector positions move down.
fn without_columns(def: &TableDef, dropped: &[usize]) -> TableDef {
    let kept: Vec<usize> = (0..def.columns.len())
        .filter(|i| !dropped.contains(i))
        .collect();
    let position = |old: usize| kept.iter().position(|&k| k == old);
    let mut new = def.clone();
    new.columns = kept.iter().map(|&i| def.columns[i].clone()).collect();
    new.primary_key = def
        .primary_key
        .iter()
        .filter_map(|&i| position(i))
        .collect();
    new.vector_column = def.vector_column.and_then(position);
    // A UNIQUE constraint on a dropped column goes with it (as in Postgres).
    new.unique = def
        .unique
        .iter()
        .filter_map(|u| {
            let columns = u
                .columns
                .iter()
                .map(|&c| position(c))
                .collect::<Option<Vec<_>>>()?;
            Some(crate::store::UniqueDef {
                columns,
                ..u.clone()
            })
        })
        .collect();
    if new.vector_column.is_none() {
        // Index settings of a table without an index mean nothing.
        new.options.remove("tenant_key");
    }
    if let Some(t) = new.options.get("tenant_key").cloned()
        && new.column_index(&t).is_none()
    {
        new.options.remove("tenant_key");
    }
    new
}

/// `RENAME [COLUMN] a TO b` and `ALTER [COLUMN] c SET/DROP DEFAULT`, `SET/DROP NOT
/// NULL`, `[SET DATA] TYPE t` (where `t` is stored as the column already is, e.g.
/// `varchar(100)` to `varchar(200)`): changes to the catalog only, the rows as they are.
/// A renamed column keeps its name in the row store. A table with a vector index has it
/// rebuilt after a rename (the index's payload names the columns).
async fn alter_columns(
    session: &Session,
    def: &TableDef,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    let mut new = def.clone();
    let mut renamed = false;
    for op in ops {
        match op {
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                rename_column(&mut new, old_column_name, new_column_name)?;
                renamed = true;
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                alter_column(session, &mut new, column_name, op).await?;
            }
            _ => {}
        }
    }
    if new == *def {
        return Ok(Output::Command(DONE.into()));
    }
    crate::engine::ddl::alter_columns(&session.engine.core, def, new, renamed).await?;
    Ok(Output::Command(DONE.into()))
}

fn rename_column(def: &mut TableDef, from: &Ident, to: &Ident) -> Result<()> {
    let (from, to) = (ident_name(from), ident_name(to));
    let i = def
        .column_index(&from)
        .ok_or_else(|| Error::UndefinedColumn(from.clone()))?;
    if def.column_index(&to).is_some() {
        return Err(Error::DuplicateColumn(to, def.name.clone()));
    }
    if to == super::vector_search::DISTANCE && def.indexed() {
        return Err(Error::InvalidTableDefinition(
            "a column may not be named \"distance\": vector_search adds that column".into(),
        ));
    }
    let column = &mut def.columns[i];
    if column.stored.is_none() {
        column.stored = Some(column.name.clone());
    }
    if column.stored.as_deref() == Some(to.as_str()) {
        column.stored = None;
    }
    column.name = to.clone();
    if def.options.get("tenant_key") == Some(&from) {
        def.options.insert("tenant_key".into(), to);
    }
    Ok(())
}

async fn alter_column(
    session: &Session,
    def: &mut TableDef,
    column: &Ident,
    op: &AlterColumnOperation,
) -> Result<()> {
    let cname = ident_name(column);
    let i = def
        .column_index(&cname)
        .ok_or_else(|| Error::UndefinedColumnOf(cname.clone(), def.name.clone()))?;
    match op {
        AlterColumnOperation::SetDefault { value } => {
            if def.columns[i].identity.is_some() {
                return Err(Error::Syntax(format!(
                    "column \"{cname}\" of relation \"{}\" is an identity column",
                    def.name
                )));
            }
            let text = super::defaults::check(session, def, i, value).await?;
            def.columns[i].default = Some(text);
        }
        AlterColumnOperation::DropDefault => def.columns[i].default = None,
        AlterColumnOperation::DropNotNull => {
            if def.primary_key.contains(&i) {
                return Err(Error::InvalidTableDefinition(format!(
                    "column \"{cname}\" is in a primary key"
                )));
            }
            def.columns[i].nullable = true;
        }
        AlterColumnOperation::SetNotNull => {
            if def.columns[i].nullable && has_null(session, def, i).await? {
                return Err(Error::NotNullViolation(format!(
                    "column \"{cname}\" of relation \"{}\" contains null values",
                    def.name
                )));
            }
            def.columns[i].nullable = false;
        }
        AlterColumnOperation::SetDataType {
            data_type, using, ..
        } => {
            let ty = parse_type(&data_type.to_string())?;
            if ty != def.columns[i].ty || using.is_some() {
                return Err(Error::FeatureNotSupported(format!(
                    "ALTER COLUMN \"{cname}\" TYPE {data_type} is not supported: only a type stored as the column's own ({}) is",
                    def.columns[i].ty.sql_name()
                )));
            }
        }
        other => {
            return Err(Error::FeatureNotSupported(format!(
                "ALTER COLUMN ... {other} is not supported"
            )));
        }
    }
    Ok(())
}

/// A name in the row store for a new column `name`: its own unless a column renamed
/// earlier is stored under it.
fn free_stored_name(def: &TableDef, name: &str) -> Option<String> {
    let taken = |n: &str| {
        def.columns
            .iter()
            .any(|c| c.stored_name() == n || c.name == n)
    };
    if !taken(name) {
        return None;
    }
    (1..).map(|k| format!("{name}_{k}")).find(|n| !taken(n))
}

/// Whether any stored row has NULL in column `i` (a full scan).
async fn has_null(session: &Session, def: &TableDef, i: usize) -> Result<bool> {
    let core = &session.engine.core;
    let mut rows = core.rows.scan(def, 1000, None);
    while let Some(batch) = futures::StreamExt::next(&mut rows).await {
        if batch?.iter().any(|r| r.get(i).is_none_or(|v| v.is_null())) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `ALTER TABLE t ADD [COLUMN] [IF NOT EXISTS] c type [NOT NULL] [DEFAULT e], ...`: the
/// columns go at the end; the rows already stored get the default (evaluated once), as
/// in Postgres. Not yet: a vector column, a key column, a volatile default.
async fn add_columns(
    session: &Session,
    def: &TableDef,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    let mut new = def.clone();
    for op in ops {
        let AlterTableOperation::AddColumn {
            if_not_exists,
            column_def: c,
            ..
        } = op
        else {
            continue;
        };
        let cname = ident_name(&c.name);
        if new.column_index(&cname).is_some() {
            let taken = Error::DuplicateColumn(cname, def.name.clone());
            if *if_not_exists {
                skipping(session, taken);
                continue;
            }
            return Err(taken);
        }
        let type_name = c.data_type.to_string().to_ascii_lowercase();
        if type_name.contains("serial") {
            return Err(Error::FeatureNotSupported(format!(
                "ADD COLUMN of type {type_name} is not supported"
            )));
        }
        let ty = parse_type(&c.data_type.to_string())?;
        if matches!(ty, ColumnType::Vector(_)) {
            return Err(Error::FeatureNotSupported(
                "ADD COLUMN of a vector column is not supported yet: a table's vector column is given at CREATE TABLE".into(),
            ));
        }
        if cname == super::vector_search::DISTANCE && def.indexed() {
            return Err(Error::InvalidTableDefinition(
                "a column may not be named \"distance\": vector_search adds that column".into(),
            ));
        }
        let mut nullable = true;
        let mut default = None;
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => {}
                ColumnOption::Default(e) => default = Some(e.clone()),
                ColumnOption::Unique(_) => unique_not_enforced(session, &cname),
                other => {
                    return Err(Error::FeatureNotSupported(format!(
                        "ADD COLUMN with {other} is not supported"
                    )));
                }
            }
        }
        // A renamed column may keep this name in the row store: the new one gets another.
        let stored = free_stored_name(&new, &cname);
        new.columns.push(ColumnDef {
            name: cname,
            ty,
            nullable,
            default: None,
            identity: None,
            stored,
        });
        if let Some(e) = default {
            let i = new.columns.len() - 1;
            let text = super::defaults::check(session, &new, i, &e).await?;
            new.columns[i].default = Some(text);
        }
    }
    if new.columns.len() == def.columns.len() {
        return Ok(Output::Command("ALTER TABLE".into()));
    }
    let mut fill = Vec::new();
    for i in def.columns.len()..new.columns.len() {
        fill.push(super::defaults::for_stored_rows(session, &new, i).await?);
    }
    // A NOT NULL column without a default can only be added to an empty table.
    if let Some((c, _)) = new.columns[def.columns.len()..]
        .iter()
        .zip(&fill)
        .find(|(c, v)| !c.nullable && v.is_null())
    {
        let core = &session.engine.core;
        let mut rows = core.rows.scan(def, 1, Some(1));
        if let Some(batch) = futures::StreamExt::next(&mut rows).await
            && !batch?.is_empty()
        {
            return Err(Error::NotNullViolation(format!(
                "column \"{}\" of relation \"{}\" contains null values",
                c.name, def.name
            )));
        }
    }
    crate::engine::ddl::add_columns(&session.engine.core, def, new, &fill).await?;
    Ok(Output::Command("ALTER TABLE".into()))
}
