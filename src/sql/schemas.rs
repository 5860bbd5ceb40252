//! Schemas: `CREATE SCHEMA`, `DROP SCHEMA [CASCADE]`, schema-qualified names and the
//! session's `search_path`.
//!
//! A table of a schema other than `public` is known in the catalog as `schema.table`
//! ([`crate::store::qualified`]); its rows and points are kept under a storable name of
//! their own, as any table whose name the stores cannot take.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, ObjectType, SchemaName, Statement, visit_relations_mut,
};

use super::statements::ident_name;
use super::{Output, Session};
use crate::engine::Core;
use crate::error::{Error, Result};

/// The schemas the system keeps: they hold none of the proxy's tables.
pub fn is_system(name: &str) -> bool {
    matches!(name, "pg_catalog" | "information_schema") || name.starts_with("pg_toast")
}

/// 3F000 unless `schema` (`None`: `public`) exists: where CREATE puts a relation.
pub fn require(core: &Core, schema: Option<&str>) -> Result<()> {
    match schema {
        Some(s) if !core.has_schema(s) => Err(Error::InvalidSchemaName(s.to_string())),
        _ => Ok(()),
    }
}

/// `CREATE SCHEMA [IF NOT EXISTS] name [AUTHORIZATION role]`.
pub async fn create(session: &Session, name: &SchemaName, if_not_exists: bool) -> Result<Output> {
    let name = match name {
        SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => single(n)?,
        // `CREATE SCHEMA AUTHORIZATION joe` names the schema after the role.
        SchemaName::UnnamedAuthorization(role) => ident_name(role),
    };
    let core = &session.engine.core;
    if core.has_schema(&name) || is_system(&name) {
        if if_not_exists {
            session
                .notices
                .push(format!("schema \"{name}\" already exists, skipping"));
            return Ok(Output::Command("CREATE SCHEMA".into()));
        }
        return Err(Error::DuplicateSchema(name));
    }
    if name.starts_with("pg_") {
        return Err(Error::Detailed {
            code: "42939",
            message: format!("unacceptable schema name \"{name}\""),
            detail: "The prefix \"pg_\" is reserved for system schemas.".into(),
        });
    }
    if name.len() > 63 {
        return Err(Error::FeatureNotSupported(format!(
            "schema name \"{name}\" is longer than 63 bytes"
        )));
    }
    match crate::engine::ddl::create_schema(core, &name).await {
        // Made by another session between the check and the store's own.
        Err(Error::DuplicateSchema(_)) if if_not_exists => session
            .notices
            .push(format!("schema \"{name}\" already exists, skipping")),
        other => other?,
    }
    Ok(Output::Command("CREATE SCHEMA".into()))
}

/// `DROP SCHEMA [IF EXISTS] name, ... [CASCADE | RESTRICT]`: with CASCADE its tables
/// and sequences go first (foreign keys of other schemas' tables that reference them
/// too); without, a schema that holds any is 2BP01.
pub async fn drop(
    session: &Session,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<Output> {
    let core = &session.engine.core;
    let mut targets = Vec::new();
    for n in names {
        let name = single(n)?;
        if name == "public" || is_system(&name) {
            return Err(Error::FeatureNotSupported(format!(
                "schema \"{name}\" cannot be dropped: vectorgate keeps it"
            )));
        }
        if core.has_schema(&name) {
            targets.push(name);
        } else if if_exists {
            session
                .notices
                .push(format!("schema \"{name}\" does not exist, skipping"));
        } else {
            return Err(Error::InvalidSchemaName(name));
        }
    }
    for name in &targets {
        let tables: Vec<String> = core
            .tables()
            .iter()
            .filter(|d| d.schema() == name)
            .map(|d| d.name.clone())
            .collect();
        let sequences: Vec<String> = core
            .sequence_defs()
            .iter()
            .filter(|s| s.schema() == name)
            .map(|s| s.name.clone())
            .collect();
        let mut held: Vec<String> = tables
            .iter()
            .map(|t| format!("table {t}"))
            .chain(sequences.iter().map(|s| format!("sequence {s}")))
            .collect();
        held.sort();
        if !held.is_empty() && !cascade {
            return Err(Error::DependentObjects {
                message: format!("cannot drop schema {name} because other objects depend on it"),
                detail: held
                    .iter()
                    .map(|h| format!("{h} depends on schema {name}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        match held.as_slice() {
            [] => {}
            [one] => session.notices.push(format!("drop cascades to {one}")),
            many => session.notices.push(format!(
                "drop cascades to {} other objects\n{}",
                many.len(),
                many.iter()
                    .map(|h| format!("drop cascades to {h}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
        if !tables.is_empty() {
            super::statements::drop_table_keys(session, tables, true).await?;
        }
        for seq in sequences {
            if core.has_sequence(&seq) {
                core.drop_sequence(&seq).await?;
            }
        }
        crate::engine::ddl::drop_schema(core, name).await?;
    }
    Ok(Output::Command("DROP SCHEMA".into()))
}

/// A schema's name: one identifier.
fn single(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Ok(ident_name(i)),
        _ => Err(Error::Syntax(format!("improper schema name: {name}"))),
    }
}

/// The schemas a `search_path` setting names, in order, as written (`"$user"` left
/// out: no schema is named after a role unless one was made so, and then it is named).
pub fn search_path(setting: &str) -> Vec<String> {
    setting
        .split(',')
        .map(|s| {
            let s = s.trim();
            match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => s.trim_matches('\'').to_ascii_lowercase(),
            }
        })
        .filter(|s| !s.is_empty() && s != "$user")
        .collect()
}

/// Qualify the unqualified relation names of `stmt` by the session's search path,
/// when that puts a schema other than `public` first: a name is the first schema's on
/// the path that has a table of that name (left alone when that is `public`'s, or none
/// has it); a table `CREATE TABLE` makes goes into the first schema on the path that
/// exists. Nothing to do with the default path.
pub fn qualify(core: &Core, path: &[String], stmt: &mut Statement) {
    let schemas: Vec<&String> = path.iter().filter(|s| core.has_schema(s)).collect();
    if schemas.first().is_none_or(|s| *s == "public") {
        return;
    }
    let qualified = |name: &ObjectName| -> Option<ObjectName> {
        let [ObjectNamePart::Identifier(rel)] = name.0.as_slice() else {
            return None;
        };
        let bare = ident_name(rel);
        let schema = schemas.iter().find(|s| {
            let key = crate::store::qualified(s, &bare);
            core.has_table(&key) || core.has_sequence(&key)
        })?;
        (*schema != "public").then(|| {
            ObjectName(vec![
                ObjectNamePart::Identifier(Ident::with_quote('"', schema.as_str())),
                ObjectNamePart::Identifier(rel.clone()),
            ])
        })
    };
    match stmt {
        Statement::CreateTable(ct) if ct.name.0.len() == 1 => {
            let first = schemas[0].clone();
            ct.name
                .0
                .insert(0, ObjectNamePart::Identifier(Ident::with_quote('"', first)));
        }
        Statement::CreateIndex(ci) => {
            if let Some(q) = qualified(&ci.table_name) {
                ci.table_name = q;
            }
        }
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::Sequence,
            names,
            ..
        } => {
            for n in names.iter_mut() {
                if let Some(q) = qualified(n) {
                    *n = q;
                }
            }
        }
        _ => {}
    }
    let _ = visit_relations_mut(stmt, |name| {
        if let Some(q) = qualified(name) {
            *name = q;
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_settings_name_their_schemas_in_order() {
        assert_eq!(search_path("\"$user\", public"), vec!["public"]);
        assert_eq!(search_path("vecs, Public"), vec!["vecs", "public"]);
        assert_eq!(
            search_path("\"My Schema\",public"),
            vec!["My Schema", "public"]
        );
        assert_eq!(search_path("'app'"), vec!["app"]);
        assert!(search_path("").is_empty());
    }
}
