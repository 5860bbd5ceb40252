//! `ALTER TABLE`: index options, and changes to a live table's columns (ADD, DROP,
//! RENAME, ALTER COLUMN ... SET/DROP DEFAULT, SET/DROP NOT NULL, TYPE), in both row
//! stores, without losing a row; RENAME TO.

use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnOption, Ident,
    RenameTableNameKind, SqlOption,
};

use super::constraints;
use super::statements::{ident_name, option_text, parse_type, table_name};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::options::{ALTERABLE_OPTIONS, IndexOptions};
use crate::store::{ColumnDef, TableDef};
use std::sync::Arc;

const DONE: &str = "ALTER TABLE";

/// One ALTER TABLE statement: a list of changes of one kind (index options, added
/// columns, dropped columns, or changes to columns' names, defaults and NOT NULL).
pub(super) async fn alter_table(session: &Session, at: &AlterTable) -> Result<Output> {
    let shared = &session.engine.core;
    // `ALTER SEQUENCE`, as the parser reads it (see `alter_sequence_statement`).
    if let [AlterTableOperation::SetOptionsParens { options }] = at.operations.as_slice()
        && let [SqlOption::KeyValue { key, value }] = options.as_slice()
        && key.value == super::sequences::ALTER_SEQUENCE
    {
        let action = option_text(value);
        return super::sequences::alter_sequence(session, &at.name, at.if_exists, &action).await;
    }
    let name = table_name(&at.name)?;
    // Tables and sequences have no owners here: OWNER TO (which pg_dump writes for each)
    // is accepted with a NOTICE.
    if at
        .operations
        .iter()
        .all(|op| matches!(op, AlterTableOperation::OwnerTo { .. }))
        && (shared.has_table(&name) || shared.has_sequence(&name))
    {
        for op in &at.operations {
            if let AlterTableOperation::OwnerTo { new_owner } = op {
                session.notices.push(format!(
                    "vectorgate keeps no owners: \"{name}\" is not given to {new_owner}"
                ));
            }
        }
        return Ok(Output::Command(DONE.into()));
    }
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
    if let [
        AlterTableOperation::AddConstraint {
            constraint: datafusion::sql::sqlparser::ast::TableConstraint::PrimaryKey(pk),
            ..
        },
    ] = ops.as_slice()
    {
        add_primary_key(session, &def, pk).await
    } else if all(|op| matches!(op, AlterTableOperation::AddColumn { .. })) {
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
    } else if all(|op| {
        matches!(
            op,
            AlterTableOperation::AddConstraint { .. } | AlterTableOperation::DropConstraint { .. }
        )
    }) {
        alter_constraints(session, &def, ops).await
    } else if let [AlterTableOperation::RenameTable { table_name: to }] = ops.as_slice() {
        let (RenameTableNameKind::To(to) | RenameTableNameKind::As(to)) = to;
        // The new name is in the table's own schema.
        let to = match to.0.last().and_then(|p| p.as_ident()) {
            Some(i) => ident_name(i),
            None => table_name(to)?,
        };
        super::statements::check_table_name(&to)?;
        let to = crate::store::qualified(def.schema(), &to);
        crate::engine::ddl::rename_table(shared, &def, &to).await?;
        Ok(Output::Command(DONE.into()))
    } else {
        Err(Error::FeatureNotSupported(format!(
            "ALTER TABLE ... {} is not supported: ADD COLUMN, DROP COLUMN, RENAME COLUMN, ALTER COLUMN (SET/DROP DEFAULT, SET/DROP NOT NULL, TYPE), ADD/DROP CONSTRAINT, SET (index options) and RENAME TO are, one kind per statement",
            ops.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// `ADD [CONSTRAINT name] PRIMARY KEY (cols)` of a table created without one (what
/// `pg_dump` writes after a table's data): its rows move to the new key
/// ([`crate::engine::ddl::rekey`]). A table with a key of its own: 42P16, as Postgres.
async fn add_primary_key(
    session: &Session,
    def: &TableDef,
    pk: &datafusion::sql::sqlparser::ast::PrimaryKeyConstraint,
) -> Result<Output> {
    if !def.hidden_key() {
        return Err(Error::InvalidTableDefinition(format!(
            "multiple primary keys for table \"{}\" are not allowed",
            def.relname()
        )));
    }
    let cols = super::statements::constraint_columns(&def.columns, &pk.columns)?;
    let mut new = def.clone();
    for &c in &cols {
        system_column("alter", &def.columns[c])?;
        if !def.columns[c].ty.is_key_type() {
            return Err(Error::InvalidTableDefinition(format!(
                "column \"{}\" of type {} cannot be part of a primary key",
                def.columns[c].name,
                def.columns[c].ty.sql_name()
            )));
        }
        new.columns[c].nullable = false;
    }
    new.primary_key = cols;
    new.pk_constraint = pk.name.as_ref().map(ident_name);
    crate::engine::ddl::rekey(&session.engine.core, def, new, &session.notices).await?;
    Ok(Output::Command(DONE.into()))
}

/// A table's hidden key is a system column, which ALTER TABLE cannot change (0A000, as
/// Postgres refuses to change `ctid`).
fn system_column(verb: &str, c: &crate::store::ColumnDef) -> Result<()> {
    if c.hidden() {
        return Err(Error::FeatureNotSupported(format!(
            "cannot {verb} system column \"{}\"",
            c.name
        )));
    }
    Ok(())
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
    let mut cascade = false;
    for op in ops {
        let AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            drop_behavior,
            ..
        } = op
        else {
            continue;
        };
        cascade |= matches!(
            drop_behavior,
            Some(datafusion::sql::sqlparser::ast::DropBehavior::Cascade)
        );
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
            system_column("drop", &def.columns[i])?;
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
    let core = &session.engine.core;
    // Other tables' foreign keys on a dropped column need CASCADE, which drops them.
    let mut dependents = Vec::new();
    for &i in &dropped {
        let these = constraints::column_references(core, def, i);
        if !these.is_empty() && !cascade {
            let what = format!("column {} of table {}", def.columns[i].name, def.name);
            return Err(constraints::dependents_error(&what, &what, &these));
        }
        dependents.extend(these);
    }
    constraints::drop_foreign_keys(session, &dependents).await?;
    let new = without_columns(def, &dropped);
    // The sequences the dropped columns own go with them (as in Postgres).
    let owned: Vec<String> = core
        .sequence_defs()
        .iter()
        .filter(|s| {
            s.owned_by.as_ref().is_some_and(|(t, c)| {
                *t == def.stored_name()
                    && dropped.iter().any(|&i| def.columns[i].stored_name() == *c)
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
    new.set_vectors(
        def.vectors()
            .into_iter()
            .filter_map(|(c, d)| Some((position(c)?, d)))
            .collect(),
    );
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
    // And the indexes on a dropped json column's values.
    new.json_indexes = def
        .json_indexes
        .iter()
        .filter_map(|j| {
            Some(crate::store::JsonIndexDef {
                column: position(j.column)?,
                ..j.clone()
            })
        })
        .collect();
    // And other indexes on a dropped column, or on an expression that uses one.
    new.indexes = def
        .indexes
        .iter()
        .filter(|ix| {
            !dropped.iter().any(|&d| {
                ix.include.contains(&d)
                    || ix
                        .predicate
                        .as_ref()
                        .is_some_and(|p| constraints::expr_uses(def, p, d))
                    || ix.keys.iter().any(|k| {
                        k.column == Some(d)
                            || k.expr
                                .as_ref()
                                .is_some_and(|e| constraints::expr_uses(def, e, d))
                    })
            })
        })
        .map(|ix| {
            let mut ix = ix.clone();
            for k in &mut ix.keys {
                k.column = k.column.and_then(position);
            }
            ix.include = ix.include.iter().filter_map(|&c| position(c)).collect();
            ix
        })
        .collect();
    // So do CHECK constraints and foreign keys that use one.
    new.checks
        .retain(|c| !dropped.iter().any(|&d| constraints::check_uses(def, c, d)));
    let gone: Vec<&str> = dropped
        .iter()
        .map(|&d| def.columns[d].name.as_str())
        .collect();
    new.foreign_keys = def
        .foreign_keys
        .iter()
        .filter(|f| f.table != def.name || !f.referenced.iter().any(|r| gone.contains(&r.as_str())))
        .filter_map(|f| {
            let columns = f
                .columns
                .iter()
                .map(|&c| position(c))
                .collect::<Option<Vec<_>>>()?;
            Some(crate::store::ForeignKeyDef {
                columns,
                ..f.clone()
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
/// A `TYPE` stored otherwise (or with `USING`) rewrites the table ([`super::retype`]).
/// A renamed column keeps its name in the row store. A table with a vector index has it
/// rebuilt after a rename (the index's payload names the columns).
async fn alter_columns(
    session: &Session,
    def: &TableDef,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    let mut new = def.clone();
    let mut renamed = Vec::new();
    let mut retypes = Vec::new();
    for op in ops {
        match op {
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                rename_column(&mut new, old_column_name, new_column_name)?;
                renamed.push((ident_name(old_column_name), ident_name(new_column_name)));
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                alter_column(session, &mut new, column_name, op, &mut retypes).await?;
            }
            _ => {}
        }
    }
    if !retypes.is_empty() {
        if !renamed.is_empty() {
            return Err(Error::Syntax(
                "RENAME COLUMN cannot be combined with ALTER COLUMN ... TYPE".into(),
            ));
        }
        super::retype::retype(session, def, new, retypes).await?;
        return Ok(Output::Command(DONE.into()));
    }
    if new == *def {
        return Ok(Output::Command(DONE.into()));
    }
    let core = &session.engine.core;
    crate::engine::ddl::alter_columns(core, def, new, !renamed.is_empty()).await?;
    // Other tables' foreign keys name the referenced columns.
    for (child, _) in constraints::referencing(core, &def.name) {
        if child.name == def.name {
            continue;
        }
        let Ok(current) = core.table(&child.name) else {
            continue;
        };
        let mut changed = (*current).clone();
        for fk in changed
            .foreign_keys
            .iter_mut()
            .filter(|f| f.table == def.name)
        {
            for r in &mut fk.referenced {
                if let Some((_, to)) = renamed.iter().find(|(from, _)| from == r) {
                    *r = to.clone();
                }
            }
        }
        if changed != *current {
            crate::engine::ddl::alter_columns(core, &current, changed, false).await?;
        }
    }
    Ok(Output::Command(DONE.into()))
}

fn rename_column(def: &mut TableDef, from: &Ident, to: &Ident) -> Result<()> {
    let (from, to) = (ident_name(from), ident_name(to));
    let i = def
        .column_index(&from)
        .ok_or_else(|| Error::UndefinedColumn(from.clone()))?;
    system_column("rename", &def.columns[i])?;
    if crate::store::SYSTEM_COLUMNS.contains(&to.as_str()) {
        return Err(Error::SystemColumn(to));
    }
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
    for c in &mut def.checks {
        c.expr = constraints::renamed_in_check(&c.expr, &from, &to);
    }
    for ix in &mut def.indexes {
        for e in ix.keys.iter_mut().filter_map(|k| k.expr.as_mut()) {
            *e = constraints::renamed_in_check(e, &from, &to);
        }
        if let Some(p) = &mut ix.predicate {
            *p = constraints::renamed_in_check(p, &from, &to);
        }
    }
    let table = def.name.clone();
    for fk in def.foreign_keys.iter_mut().filter(|f| f.table == table) {
        for r in fk.referenced.iter_mut().filter(|r| **r == from) {
            *r = to.clone();
        }
    }
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
    retypes: &mut Vec<super::retype::Retype>,
) -> Result<()> {
    let cname = ident_name(column);
    let i = def
        .column_index(&cname)
        .ok_or_else(|| Error::UndefinedColumnOf(cname.clone(), def.name.clone()))?;
    system_column("alter", &def.columns[i])?;
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
            let type_name = data_type.to_string().to_ascii_lowercase();
            let varchar = super::statements::character_type(&cname, &type_name, &session.notices)?;
            if ty != def.columns[i].ty || using.is_some() {
                // Stored otherwise: every row is converted and written again.
                retypes.push(super::retype::check(def, i, ty, varchar, using.as_ref())?);
                return Ok(());
            }
            // text, varchar and varchar(n) are stored alike: a shorter limit is checked
            // against every row first.
            if let Some(n) = varchar.filter(|n| *n > 0)
                && def.columns[i].varchar.is_none_or(|old| old == 0 || old > n)
            {
                any_row(session, def, |r| {
                    if let Some(v) = r.get(i) {
                        super::statements::fit_varchar(v.clone(), n)?;
                    }
                    Ok(false)
                })
                .await?;
            }
            def.columns[i].varchar = varchar;
        }
        AlterColumnOperation::AddGenerated {
            generated_as,
            sequence_options,
        } => {
            use datafusion::sql::sqlparser::ast::GeneratedAs;
            let column = &def.columns[i];
            if !matches!(
                column.ty,
                crate::types::ColumnType::SmallInt
                    | crate::types::ColumnType::Int
                    | crate::types::ColumnType::BigInt
            ) {
                return Err(Error::InvalidTableDefinition(format!(
                    "identity column type must be smallint, integer, or bigint (column \"{cname}\")"
                )));
            }
            if column.nullable {
                return Err(Error::ObjectNotInPrerequisiteState(format!(
                    "column \"{cname}\" of relation \"{}\" must be declared NOT NULL before identity can be added",
                    def.relname()
                )));
            }
            if column.identity.is_some() {
                return Err(Error::ObjectNotInPrerequisiteState(format!(
                    "column \"{cname}\" of relation \"{}\" is already an identity column",
                    def.relname()
                )));
            }
            if column.default.is_some() {
                return Err(Error::ObjectNotInPrerequisiteState(format!(
                    "column \"{cname}\" of relation \"{}\" already has a default value",
                    def.relname()
                )));
            }
            let seq = super::sequences::sequence_def(
                crate::store::qualified(def.schema(), &format!("{}_{cname}_seq", def.relname())),
                def.schema.clone(),
                Some(column.ty.clone()),
                sequence_options.as_deref().unwrap_or_default(),
                Some((
                    def.stored_name().to_string(),
                    column.stored_name().to_string(),
                )),
            )?;
            let core = &session.engine.core;
            if core.has_table(&seq.name) || core.has_sequence(&seq.name) {
                return Err(Error::DuplicateTable(seq.name));
            }
            def.columns[i].default = Some(format!("nextval('{}'::regclass)", seq.name));
            def.columns[i].identity = Some(match generated_as {
                Some(GeneratedAs::Always) => 'a',
                _ => 'd',
            });
            core.create_sequence(seq).await?;
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
    any_row(session, def, |r| Ok(r.get(i).is_none_or(|v| v.is_null()))).await
}

/// Whether a stored row of the table passes `found`, read in pages; an error from
/// `found` ends the scan with it.
async fn any_row(
    session: &Session,
    def: &TableDef,
    mut found: impl FnMut(&crate::store::Row) -> Result<bool>,
) -> Result<bool> {
    let mut rows = session.engine.core.rows.scan(def, 1000, None);
    while let Some(batch) = futures::StreamExt::next(&mut rows).await {
        for r in batch? {
            if found(&r)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// `ALTER TABLE t ADD [COLUMN] [IF NOT EXISTS] c type [NOT NULL] [DEFAULT e], ...`: the
/// columns go at the end; the rows already stored get the default (evaluated once), as
/// in Postgres. A vector column with a dimension joins the vector index, which is built
/// again from the rows. Not yet: a key column, a volatile default.
async fn add_columns(
    session: &Session,
    def: &TableDef,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    let mut new = def.clone();
    // Constraints of the new columns, added once they all exist.
    let mut uniques = Vec::new();
    let mut checks = Vec::new();
    let mut foreign_keys = Vec::new();
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
        if crate::store::SYSTEM_COLUMNS.contains(&cname.as_str()) {
            return Err(Error::SystemColumn(cname));
        }
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
        let varchar = super::statements::character_type(&cname, &type_name, &session.notices)?;
        if ty.is_vector() && new.column_index(super::vector_search::DISTANCE).is_some() {
            return Err(Error::InvalidTableDefinition(format!(
                "\"{}\" has a column named \"distance\", which vector_search adds: it cannot have a vector column",
                def.name
            )));
        }
        if cname == super::vector_search::DISTANCE && new.vector_columns().next().is_some() {
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
                ColumnOption::Unique(u) => {
                    super::statements::refuse_nulls_not_distinct(u)?;
                    uniques.push((u.name.as_ref().map(ident_name), cname.clone()));
                }
                ColumnOption::Check(c) => checks.push(c.clone()),
                ColumnOption::ForeignKey(fk) => foreign_keys.push((cname.clone(), fk.clone())),
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
            varchar,
        });
        // A vector column with a dimension (or a sparsevec) joins the index (built
        // again from the rows), searched by the table's distance until an index's
        // operator class says otherwise.
        let added = new.columns.len() - 1;
        if new.index_holds(added, def.default_distance()) {
            let mut vectors = new.vectors();
            vectors.push((added, def.default_distance()));
            new.set_vectors(vectors);
        }
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
    let before = new.clone();
    for c in &checks {
        constraints::add_check(session, &mut new, c)?;
    }
    for (cname, fk) in &foreign_keys {
        let i = new.column_index(cname).unwrap_or_default();
        constraints::add_foreign_key(session, &mut new, &[i], fk)?;
    }
    for (name, cname) in uniques {
        let i = new.column_index(&cname).unwrap_or_default();
        constraints::add_unique(&mut new, name, vec![i])?;
    }
    if new != before {
        // The stored rows, with the values the new columns give them, must pass.
        let mut rows = constraints::all_rows(session, def).await?;
        for r in &mut rows {
            r.extend(fill.iter().cloned());
        }
        let mut only = new.clone();
        only.checks.retain(|c| !before.checks.contains(c));
        only.foreign_keys
            .retain(|f| !before.foreign_keys.contains(f));
        constraints::check_written(session, &only, &rows).await?;
        let mut unique = new.clone();
        unique.unique.retain(|u| !before.unique.contains(u));
        unique.checks.clear();
        unique.foreign_keys.clear();
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            for u in &unique.unique {
                let v: Vec<_> = u.columns.iter().map(|&c| r[c].clone()).collect();
                if !v.iter().any(crate::types::Value::is_null)
                    && !seen.insert((u.name.clone(), crate::store::keys::encode(&v)))
                {
                    return Err(Error::UniqueViolation {
                        message: format!("could not create unique index \"{}\"", u.name),
                        detail: format!(
                            "Key ({})=({}) is duplicated.",
                            u.columns
                                .iter()
                                .map(|&c| new.columns[c].name.clone())
                                .collect::<Vec<_>>()
                                .join(", "),
                            v.iter()
                                .map(crate::store::display_key_value)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        table: new.name.clone(),
                        constraint: u.name.clone(),
                    });
                }
            }
        }
    }
    let core = &session.engine.core;
    crate::engine::ddl::add_columns(core, def, before.clone(), &fill).await?;
    if new != before {
        publish(session, &before, new).await?;
    }
    Ok(Output::Command("ALTER TABLE".into()))
}

/// `ADD [CONSTRAINT name] CHECK (...) | FOREIGN KEY ... | UNIQUE (...) [NOT VALID]` and
/// `DROP CONSTRAINT [IF EXISTS] name [CASCADE]`. An added CHECK or FOREIGN KEY is tested
/// against every stored row first (unless NOT VALID); an added UNIQUE is in the catalog
/// before the stored rows' values are claimed, so that writes from then on claim theirs.
async fn alter_constraints(
    session: &Session,
    def: &Arc<TableDef>,
    ops: &[AlterTableOperation],
) -> Result<Output> {
    use datafusion::sql::sqlparser::ast::{DropBehavior, TableConstraint};
    let core = &session.engine.core;
    let mut new = (**def).clone();
    let mut validate = Vec::new();
    let mut dependents = Vec::new();
    for op in ops {
        match op {
            AlterTableOperation::AddConstraint {
                constraint,
                not_valid,
            } => match constraint {
                TableConstraint::Check(c) => {
                    constraints::add_check(session, &mut new, c)?;
                    if !not_valid {
                        validate.push(new.checks.len() - 1);
                    }
                }
                TableConstraint::ForeignKey(fk) => {
                    let cols = constraints::key_columns(&new.columns, fk)?;
                    constraints::add_foreign_key(session, &mut new, &cols, fk)?;
                }
                TableConstraint::Unique(u) => {
                    super::statements::refuse_nulls_not_distinct(u)?;
                    let cols = super::statements::constraint_columns(&new.columns, &u.columns)?;
                    constraints::add_unique(&mut new, u.name.as_ref().map(ident_name), cols)?;
                }
                other => {
                    return Err(Error::FeatureNotSupported(format!(
                        "ALTER TABLE ... ADD {other} is not supported (CHECK, FOREIGN KEY and UNIQUE are)"
                    )));
                }
            },
            AlterTableOperation::DropConstraint {
                if_exists,
                name,
                drop_behavior,
            } => {
                let cname = ident_name(name);
                let cascade = matches!(drop_behavior, Some(DropBehavior::Cascade));
                if cname == new.pk_name() {
                    return Err(Error::FeatureNotSupported(format!(
                        "cannot drop the primary key of \"{}\": a table here always keeps it",
                        new.name
                    )));
                }
                let before = (new.checks.len(), new.foreign_keys.len(), new.unique.len());
                new.checks.retain(|c| c.name != cname);
                new.foreign_keys.retain(|f| f.name != cname);
                if let Some(u) = new.unique.iter().position(|u| u.name == cname) {
                    // Foreign keys that reference these columns depend on the constraint.
                    let names: Vec<String> = new.unique[u]
                        .columns
                        .iter()
                        .map(|&c| new.columns[c].name.clone())
                        .collect();
                    let these: Vec<_> = constraints::referencing(core, &new.name)
                        .into_iter()
                        .filter(|(_, f)| {
                            let mut a = f.referenced.clone();
                            let mut b = names.clone();
                            a.sort();
                            b.sort();
                            a == b
                        })
                        .collect();
                    if !these.is_empty() && !cascade {
                        let what = format!("constraint {cname} on table {}", new.name);
                        let on = format!("index {cname}");
                        return Err(constraints::dependents_error(&what, &on, &these));
                    }
                    dependents.extend(these);
                    new.unique.remove(u);
                }
                if before == (new.checks.len(), new.foreign_keys.len(), new.unique.len()) {
                    let missing = Error::UndefinedObject(format!(
                        "constraint \"{cname}\" of relation \"{}\" does not exist",
                        new.name
                    ));
                    if *if_exists {
                        skipping(session, missing);
                        continue;
                    }
                    return Err(missing);
                }
            }
            _ => {}
        }
    }
    if new == **def {
        return Ok(Output::Command(DONE.into()));
    }
    let added_fks: Vec<_> = new
        .foreign_keys
        .iter()
        .filter(|f| !def.foreign_keys.iter().any(|d| d.name == f.name))
        .cloned()
        .collect();
    if !validate.is_empty() || !added_fks.is_empty() {
        let rows = constraints::all_rows(session, def).await?;
        for i in validate {
            let c = &new.checks[i];
            let mut one = new.clone();
            one.checks = vec![c.clone()];
            one.foreign_keys.clear();
            if let Err(Error::CheckViolation { .. }) =
                constraints::check_written(session, &one, &rows).await
            {
                return Err(Error::CheckViolation {
                    message: format!(
                        "check constraint \"{}\" of relation \"{}\" is violated by some row",
                        c.name, new.name
                    ),
                    detail: String::new(),
                    table: new.name.clone(),
                    constraint: c.name.clone(),
                });
            }
        }
        let mut one = new.clone();
        one.checks.clear();
        one.foreign_keys = added_fks;
        constraints::check_written(session, &one, &rows).await?;
    }
    constraints::drop_foreign_keys(session, &dependents).await?;
    publish(session, def, new).await?;
    Ok(Output::Command(DONE.into()))
}

/// Put `new` (`def` changed in its catalog entry only) in the catalog; the stored rows
/// then claim the values of UNIQUE constraints `new` adds, and if two rows share one the
/// constraints go again (23505).
pub(super) async fn publish(session: &Session, def: &TableDef, new: TableDef) -> Result<()> {
    let core = &session.engine.core;
    let added: Vec<crate::store::UniqueDef> = new
        .unique
        .iter()
        .filter(|u| !def.unique.iter().any(|d| d.space == u.space))
        .cloned()
        .collect();
    crate::engine::ddl::alter_columns(core, def, new.clone(), false).await?;
    if !added.is_empty()
        && let Err(e) = constraints::claim_stored(session, &new, added.clone()).await
    {
        let mut back = new.clone();
        back.unique
            .retain(|u| !added.iter().any(|a| a.space == u.space));
        crate::engine::ddl::alter_columns(core, &new, back, false).await?;
        return Err(e);
    }
    Ok(())
}
