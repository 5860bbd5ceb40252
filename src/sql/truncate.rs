//! `TRUNCATE [TABLE] name [, ...] [RESTART IDENTITY | CONTINUE IDENTITY] [CASCADE |
//! RESTRICT]`: every row of the tables goes, as a delete of each (inside a transaction
//! block, part of the block: a ROLLBACK brings them back). A table another table's
//! foreign key references is refused (0A000) unless that table goes too, or CASCADE
//! adds it (NOTICE "truncate cascades to table ..."). `RESTART IDENTITY` restarts the
//! sequences the tables' columns own.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{CascadeOption, Truncate, TruncateIdentityOption};

use super::constraints::{Removal, referencing};
use super::statements::{quote_ident, table_name};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::TableDef;

pub(super) async fn truncate(session: &Session, t: &Truncate) -> Result<Output> {
    let core = &session.engine.core;
    let mut targets: Vec<Arc<TableDef>> = Vec::new();
    for n in &t.table_names {
        let name = table_name(&n.name)?;
        match core.table(&name) {
            Ok(def) => {
                if !targets.iter().any(|d| d.name == def.name) {
                    targets.push(def);
                }
            }
            Err(_) if t.if_exists => {}
            Err(e) => return Err(e),
        }
    }
    let cascade = matches!(t.cascade, Some(CascadeOption::Cascade));
    // The referencing tables: CASCADE adds them (and theirs), else they must be listed.
    let mut i = 0;
    while i < targets.len() {
        for (child, _) in referencing(core, &targets[i].name) {
            if targets.iter().any(|d| d.name == child.name) {
                continue;
            }
            if !cascade {
                return Err(Error::Detailed {
                    code: "0A000",
                    message: "cannot truncate a table referenced in a foreign key constraint"
                        .into(),
                    detail: format!(
                        "Table \"{}\" references \"{}\".",
                        child.name, targets[i].name
                    ),
                });
            }
            session
                .notices
                .push(format!("truncate cascades to table \"{}\"", child.name));
            targets.push(child);
        }
        i += 1;
    }
    for def in &targets {
        let cols: Vec<String> = def
            .primary_key
            .iter()
            .map(|&c| quote_ident(&def.columns[c].name))
            .collect();
        let sql = format!("SELECT {} FROM {}", cols.join(", "), def.sql_name());
        let keys = super::statements::selected_keys(session, def, &sql).await?;
        if !keys.is_empty() {
            // Every referencing table goes too: no foreign key action applies.
            super::statements::delete_rows(session, def, keys, Removal::Truncate).await?;
        }
    }
    if matches!(t.identity, Some(TruncateIdentityOption::Restart)) {
        for seq in core.sequence_defs() {
            if seq
                .owned_by
                .as_ref()
                .is_some_and(|(table, _)| targets.iter().any(|d| d.stored_name() == table))
            {
                core.setval(&seq.name, seq.start, false).await?;
            }
        }
    }
    Ok(Output::Command("TRUNCATE TABLE".into()))
}
