//! `CREATE INDEX` and `DROP INDEX`. Every index a statement makes is kept with its table
//! and listed in the catalog (`pg_index`, `pg_indexes`, psql's `\d`) as Postgres lists
//! it, but what it does depends on what it indexes:
//!
//! * a unique index on plain columns is a UNIQUE constraint's index (enforced);
//! * an index on values inside a json column is a payload index of the vector index
//!   ([`super::json_index`]);
//! * an index on the vector column with a pgvector operator class sets the table's
//!   distance (its vector index is rebuilt from the rows when it changes);
//! * any other index is recorded only: every filterable column already has its payload
//!   index in the vector index, and rows are found by key or by a scan. A NOTICE says so.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CreateIndex, Expr as SqlExpr, ObjectName, Value,
};

use super::statements::{ident_name, table_name};
use super::{Output, Session};
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::store::{Distance, IndexDef, IndexKey, TableDef};

/// Whether a relation (table, sequence, index) of `schema` is named `name` already:
/// tables, sequences and indexes share one namespace per schema, as in Postgres.
fn relation_taken(core: &Core, schema: &str, name: &str) -> bool {
    let key = crate::store::qualified(schema, name);
    core.has_table(&key) || core.has_sequence(&key) || owner(core, schema, name).is_some()
}

/// What an index name stands for in the table that owns it.
pub(super) enum Owned {
    /// A payload index inside the vector index (`CREATE INDEX ... ((meta->>'k'))`).
    Payload,
    /// An index of `CREATE INDEX` (the vector index among them).
    Index(usize),
    /// The index of a UNIQUE constraint or of `CREATE UNIQUE INDEX`.
    Unique(usize),
    /// The primary key's index.
    PrimaryKey,
}

/// The table in `schema` that owns the index called `name`, and what the index is.
pub(super) fn owner(core: &Core, schema: &str, name: &str) -> Option<(Arc<TableDef>, Owned)> {
    core.tables().into_iter().find_map(|d| {
        if d.schema() != schema {
            return None;
        }
        let owned = if d.json_indexes.iter().any(|j| j.name == name) {
            Owned::Payload
        } else if let Some(i) = d.indexes.iter().position(|i| i.name == name) {
            Owned::Index(i)
        } else if let Some(i) = d.unique.iter().position(|u| u.name == name) {
            Owned::Unique(i)
        } else if d.pk_name() == name {
            Owned::PrimaryKey
        } else {
            return None;
        };
        Some((d, owned))
    })
}

/// The name an index gets: the one given, or Postgres' choice (`t_a_b_idx`,
/// `t_expr_idx`, `t_lower_idx`), numbered when taken (`t_a_idx1`). `None` when a given
/// name is taken and IF NOT EXISTS says to skip (the NOTICE is given).
fn index_name(session: &Session, def: &TableDef, ci: &CreateIndex) -> Result<Option<String>> {
    let core = &session.engine.core;
    if let Some(n) = &ci.name {
        let name = table_name(n)?;
        if !relation_taken(core, def.schema(), &name) {
            return Ok(Some(name));
        }
        if ci.if_not_exists {
            session
                .notices
                .push(format!("relation \"{name}\" already exists, skipping"));
            return Ok(None);
        }
        return Err(Error::DuplicateTable(name));
    }
    let parts: Vec<String> = ci
        .columns
        .iter()
        .map(|c| key_label(&c.column.expr))
        .collect();
    let base = format!("{}_{}_idx", def.relname(), parts.join("_"));
    Ok(Some(if relation_taken(core, def.schema(), &base) {
        (1..)
            .map(|i| format!("{base}{i}"))
            .find(|n| !relation_taken(core, def.schema(), n))
            .unwrap_or(base)
    } else {
        base
    }))
}

/// What Postgres puts in an index's chosen name for one key: the column's name, a
/// function's name, or `expr`.
fn key_label(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Identifier(id) => ident_name(id),
        SqlExpr::Nested(inner) => key_label(inner),
        SqlExpr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(ident_name)
            .unwrap_or_else(|| "expr".into()),
        _ => "expr".into(),
    }
}

/// The index `ci` makes, as it is kept: its keys (plain columns by position, so that a
/// RENAME COLUMN carries over), method, and the clauses after them as written.
fn index_def(def: &TableDef, ci: &CreateIndex, name: String) -> Result<IndexDef> {
    let mut keys = Vec::with_capacity(ci.columns.len());
    for c in &ci.columns {
        let mut tail = String::new();
        if let Some(opclass) = &c.operator_class {
            tail.push(' ');
            tail.push_str(&opclass.to_string());
        }
        // As Postgres prints them: the defaults (ASC; NULLS LAST ascending, NULLS FIRST
        // descending) left out.
        let desc = c.column.options.asc == Some(false);
        if desc {
            tail.push_str(" DESC");
        }
        match c.column.options.nulls_first {
            Some(true) if !desc => tail.push_str(" NULLS FIRST"),
            Some(false) if desc => tail.push_str(" NULLS LAST"),
            _ => {}
        }
        keys.push(match &c.column.expr {
            SqlExpr::Identifier(id) => {
                let n = ident_name(id);
                let column = def
                    .column_index(&n)
                    .ok_or_else(|| Error::UndefinedColumn(n.clone()))?;
                IndexKey {
                    column: Some(column),
                    expr: None,
                    tail,
                }
            }
            e => {
                let mut bare = e;
                while let SqlExpr::Nested(inner) = bare {
                    bare = inner;
                }
                IndexKey {
                    column: None,
                    expr: Some(match bare {
                        SqlExpr::Function(_) => bare.to_string(),
                        _ => format!("({bare})"),
                    }),
                    tail,
                }
            }
        });
    }
    let include = ci
        .include
        .iter()
        .map(|i| {
            let n = ident_name(i);
            def.column_index(&n).ok_or(Error::UndefinedColumn(n))
        })
        .collect::<Result<Vec<usize>>>()?;
    let mut clauses = String::new();
    if ci.nulls_distinct == Some(false) {
        clauses.push_str(" NULLS NOT DISTINCT");
    }
    if !ci.with.is_empty() {
        // As Postgres prints storage parameters: `m='16'`.
        let with: Vec<String> = ci
            .with
            .iter()
            .map(|e| match e {
                SqlExpr::BinaryOp { left, op, right } if *op == BinaryOperator::Eq => {
                    let value = match right.as_ref() {
                        SqlExpr::Value(v) => match &v.value {
                            Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        other => other.to_string(),
                    };
                    format!("{left}='{}'", value.replace('\'', "''"))
                }
                other => other.to_string(),
            })
            .collect();
        clauses.push_str(&format!(" WITH ({})", with.join(", ")));
    }
    Ok(IndexDef {
        name,
        method: ci
            .using
            .as_ref()
            .map_or_else(|| "btree".into(), |u| u.to_string().to_ascii_lowercase()),
        unique: ci.unique,
        keys,
        include,
        clauses,
        predicate: ci.predicate.as_ref().map(ToString::to_string),
    })
}

/// `CREATE INDEX`, as pgvector applications and ORMs issue it (see the module's doc).
pub(super) async fn create_index(session: &Session, ci: &CreateIndex) -> Result<Output> {
    let core = &session.engine.core;
    let def = core.table(&table_name(&ci.table_name)?)?;
    if ci.unique
        && ci.predicate.is_none()
        && ci.nulls_distinct != Some(false)
        && let Some(cols) = ci
            .columns
            .iter()
            .map(|c| match &c.column.expr {
                SqlExpr::Identifier(id) => def.column_index(&ident_name(id)),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()
    {
        // A unique index on columns is enforced as a UNIQUE constraint of that name.
        let Some(name) = index_name(session, &def, ci)? else {
            return Ok(Output::Command("CREATE INDEX".into()));
        };
        let mut new = (*def).clone();
        super::constraints::add_unique(&mut new, Some(name), cols)?;
        if let Some(u) = new.unique.last_mut()
            && !def.unique.iter().any(|d| d.space == u.space)
        {
            u.index_only = true;
        }
        super::alter::publish(session, &def, new).await?;
        return Ok(Output::Command("CREATE INDEX".into()));
    }
    if def.indexed()
        && !ci.unique
        && let Some(wanted) = super::json_index::requested(&def, ci)
    {
        return create_json_index(session, &def, ci, wanted).await;
    }
    let Some(name) = index_name(session, &def, ci)? else {
        return Ok(Output::Command("CREATE INDEX".into()));
    };
    let index = index_def(&def, ci, name.clone())?;
    if ci.unique {
        session.notices.push(format!(
            "the uniqueness of index \"{name}\" is not enforced: vectorgate enforces unique indexes on plain columns, without WHERE or NULLS NOT DISTINCT"
        ));
    }
    // Only a vector column's operator class means something here; other columns'
    // (text_pattern_ops, jsonb_path_ops, ...) are recorded and change nothing.
    let mut wanted = None;
    let mut sparse_l2 = None;
    for col in &ci.columns {
        let Some(opclass) = &col.operator_class else {
            continue;
        };
        let SqlExpr::Identifier(id) = &col.column.expr else {
            continue;
        };
        let Some(c) = def.column_index(&ident_name(id)) else {
            continue;
        };
        if !def.columns[c].ty.is_vector() {
            continue;
        }
        let op = opclass.to_string().to_ascii_lowercase();
        let op = op.rsplit('.').next().unwrap_or_default();
        // The operator classes of the column's own type: vector_l2_ops for a vector,
        // halfvec_l2_ops for a halfvec.
        let ty = match def.columns[c].ty {
            crate::types::ColumnType::HalfVec(_) => "halfvec",
            crate::types::ColumnType::SparseVec(_) => "sparsevec",
            _ => "vector",
        };
        let d = match op.split_once('_') {
            Some((t, "l2_ops")) if t == ty => Distance::L2,
            Some((t, "cosine_ops")) if t == ty => Distance::Cosine,
            Some((t, "ip_ops")) if t == ty => Distance::Dot,
            Some((t, "l2_ops" | "cosine_ops" | "ip_ops"))
                if ["vector", "halfvec", "sparsevec"].contains(&t) =>
            {
                return Err(Error::DatatypeMismatch(format!(
                    "operator class \"{op}\" does not accept data type {ty}"
                )));
            }
            _ => {
                return Err(Error::FeatureNotSupported(format!(
                    "operator class {op} is not supported ({ty}_l2_ops, {ty}_cosine_ops, {ty}_ip_ops are)"
                )));
            }
        };
        if !def.index_holds(c, d) && ty == "sparsevec" {
            // Qdrant scores sparse vectors by their inner product alone: a sparsevec
            // searched by L2 distance leaves the index, and its searches read the rows.
            session.notices.push(format!(
                "the vector index cannot rank sparsevec column \"{}\" by L2 distance (only by inner product or cosine): its searches read every row (exact, but slower as the table grows)",
                def.columns[c].name
            ));
            sparse_l2 = Some(c);
            continue;
        }
        if !def.index_holds(c, d) {
            return Err(Error::FeatureNotSupported(format!(
                "column \"{}\" does not have dimensions: an index of it needs them; declare them with ALTER TABLE {} ALTER COLUMN {} TYPE vector(n)",
                def.columns[c].name, def.name, def.columns[c].name
            )));
        }
        wanted = Some((c, d));
    }
    let vector_names: Vec<String> = def
        .vectors()
        .iter()
        .map(|(c, d)| format!("\"{}\" ({} distance)", def.columns[*c].name, d.name()))
        .collect();
    let def = match (wanted, sparse_l2) {
        (None, Some(c)) if def.distance_of(c).is_some() => {
            crate::engine::ddl::set_distance(core, &def, c, None).await?;
            core.table(&def.name)?
        }
        (None, Some(_)) => def,
        (Some((c, d)), _) if def.distance_of(c) != Some(d) => {
            crate::engine::ddl::set_distance(core, &def, c, Some(d)).await?;
            session.notices.push(format!(
                "\"{}\" is now searched by {} distance: its vector index on \"{}\" was rebuilt",
                def.name,
                d.name(),
                def.columns[c].name
            ));
            core.table(&def.name)?
        }
        (Some(_), _) => def,
        (None, None) => {
            session.notices.push(if vector_names.is_empty() {
                format!(
                    "index \"{name}\" is recorded only: \"{}\" has no vector column, and its rows are found by key or by a scan",
                    def.name
                )
            } else {
                format!(
                    "index \"{name}\" is recorded only: \"{}\" is searched by its vector index on {}, which keeps an index of every filterable column",
                    def.name,
                    vector_names.join(", ")
                )
            });
            def
        }
    };
    let mut new = (*def).clone();
    new.indexes.push(index);
    super::alter::publish(session, &def, new).await?;
    Ok(Output::Command("CREATE INDEX".into()))
}

/// `CREATE INDEX` on values inside a json column: recorded with the table, and a payload
/// index of its collection made at once (another proxy's embedded index rebuilds).
async fn create_json_index(
    session: &Session,
    def: &TableDef,
    ci: &CreateIndex,
    mut wanted: Vec<crate::store::JsonIndexDef>,
) -> Result<Output> {
    let core = &session.engine.core;
    let Some(name) = index_name(session, def, ci)? else {
        return Ok(Output::Command("CREATE INDEX".into()));
    };
    for w in &mut wanted {
        w.definition = w.definition.replacen(&w.name, &name, 1);
        w.name = name.clone();
    }
    let mut new = def.clone();
    new.json_indexes.extend(wanted);
    super::alter::publish(session, def, new.clone()).await?;
    if let Err(e) = core.index.index_json_fields(&new).await {
        // Results never depend on a payload index: the table works without it.
        tracing::warn!(table = %def.name, index = %name, error = %e, "payload index not made");
        session.notices.push(format!(
            "index \"{name}\" is recorded, but the vector index could not make it now ({e}); it is made when the collection is next rebuilt"
        ));
    }
    Ok(Output::Command("CREATE INDEX".into()))
}

/// `DROP INDEX`: a unique index (`CREATE UNIQUE INDEX`) stops being enforced, a json
/// index's payload index stops being used, any other index is forgotten; the index of a
/// constraint goes with the constraint only (2BP01).
pub(super) async fn drop_indexes(
    session: &Session,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<Output> {
    let core = &session.engine.core;
    for n in names {
        // An index is in its table's schema.
        let (schema, _) = super::statements::relation(n)?;
        let name = match n.0.last().and_then(|p| p.as_ident()) {
            Some(i) => super::statements::ident_name(i),
            None => table_name(n)?,
        };
        match owner(core, schema.as_deref().unwrap_or("public"), &name) {
            Some((def, Owned::Payload | Owned::Index(_))) => {
                let mut new = (*def).clone();
                new.json_indexes.retain(|j| j.name != name);
                new.indexes.retain(|i| i.name != name);
                super::alter::publish(session, &def, new).await?;
            }
            Some((def, Owned::Unique(i))) if def.unique[i].index_only => {
                let mut new = (*def).clone();
                new.unique.remove(i);
                super::alter::publish(session, &def, new).await?;
            }
            Some((def, Owned::Unique(_) | Owned::PrimaryKey)) => {
                return Err(Error::Detailed {
                    code: "2BP01",
                    message: format!(
                        "cannot drop index {name} because constraint {name} on table {} requires it",
                        def.name
                    ),
                    detail: String::new(),
                });
            }
            None if if_exists => session
                .notices
                .push(format!("index \"{name}\" does not exist, skipping")),
            None => {
                return Err(Error::UndefinedObject(format!(
                    "index \"{name}\" does not exist"
                )));
            }
        }
    }
    Ok(Output::Command("DROP INDEX".into()))
}
