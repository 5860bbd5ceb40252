//! Statements the proxy carries out itself: CREATE/DROP TABLE, INSERT, UPDATE, DELETE
//! (rows to the row store first, then the vector index), SET/SHOW/RESET and the
//! transaction verbs. Everything else is a query for DataFusion.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, ConflictTarget, CreateTable, CreateTableOptions, Delete, DoUpdate,
    Expr as SqlExpr, FromTable, GeneratedAs, Ident, Insert, ObjectName, ObjectType, OnConflict,
    OnConflictAction, OnInsert, SequenceOptions, Set, SqlOption, Statement, TableConstraint,
    TableFactor, TableObject, TransactionAccessMode, TransactionIsolationLevel, TransactionMode,
    Update, Value as SqlValue,
};
use futures::TryStreamExt;

use super::constraints::{FollowUp, Removal};
use super::defaults::Defaults;
use super::{Output, Session};
use crate::engine::write::Stored;
use crate::error::{Error, Result};
use crate::store::options::IndexOptions;
use crate::store::{ColumnDef, Distance, Row, TableDef, WriteMode, keys, now_micros};
use crate::types::{ColumnType, Value, coerce, value_from_array};

/// The command a statement that changes data or the catalog runs, for the read-only
/// check; `None` for statements that only read (or only touch the session).
pub fn write_verb(stmt: &Statement) -> Option<&'static str> {
    Some(match stmt {
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::Drop { .. } => "DROP",
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Truncate(_) => "TRUNCATE",
        Statement::Copy { to: false, .. } => "COPY FROM",
        Statement::Query(q) if super::writable_cte::modifies(q) => "a data-modifying WITH",
        _ => return None,
    })
}

pub async fn execute(session: &Session, stmt: &Statement) -> Result<Option<Output>> {
    if session.tx.active() {
        inside_block(session, stmt)?;
    }
    Ok(Some(match stmt {
        Statement::CreateTable(ct) => create_table(session, ct).await?,
        Statement::AlterTable(at) => super::alter::alter_table(session, at).await?,
        // pgvector applications start with this; the vector type is built in.
        Statement::CreateExtension(ext) if ext.name.value.eq_ignore_ascii_case("vector") => {
            Output::Command("CREATE EXTENSION".into())
        }
        Statement::CreateExtension(ext) => {
            return Err(Error::FeatureNotSupported(format!(
                "extension \"{}\" is not available in vectorgate (only \"vector\" is, built in)",
                ext.name.value
            )));
        }
        Statement::CreateIndex(ci) => super::indexes::create_index(session, ci).await?,
        Statement::Query(q) if !q.locks.is_empty() => super::for_update::select(session, q).await?,
        Statement::Comment {
            object_type,
            object_name,
            if_exists,
            ..
        } => comment(session, object_type, object_name, *if_exists)?,
        Statement::Truncate(t) => super::truncate::truncate(session, t).await?,
        // Postgres has no IF statement: this is a DO block (see do_block).
        Statement::If(block) => super::do_block::run(session, block).await?,
        Statement::Drop {
            object_type: ObjectType::Table,
            if_exists,
            names,
            cascade,
            ..
        } => drop_tables(session, names, *if_exists, *cascade).await?,
        Statement::CreateSequence {
            if_not_exists,
            name,
            data_type,
            sequence_options,
            owned_by,
            ..
        } => {
            let (schema, name) = relation(name)?;
            super::schemas::require(&session.engine.core, schema.as_deref())?;
            if *if_not_exists && session.engine.core.sequence(&name).await.is_ok() {
                session
                    .notices
                    .push(format!("relation \"{name}\" already exists, skipping"));
                return Ok(Some(Output::Command("CREATE SEQUENCE".into())));
            }
            let owner = match owned_by {
                None => None,
                Some(o) if o.to_string().eq_ignore_ascii_case("none") => None,
                Some(o) => {
                    let parts: Vec<String> =
                        o.0.iter()
                            .filter_map(|p| p.as_ident())
                            .map(ident_name)
                            .collect();
                    match parts.as_slice() {
                        [.., t, c] => {
                            let def = session.engine.core.table(t)?;
                            let i = def
                                .column_index(c)
                                .ok_or_else(|| Error::UndefinedColumn(c.clone()))?;
                            let column = def.columns[i].stored_name().to_string();
                            Some((def.stored_name().to_string(), column))
                        }
                        _ => {
                            return Err(Error::Syntax(
                                "OWNED BY needs table.column or NONE".into(),
                            ));
                        }
                    }
                }
            };
            let ty = data_type
                .as_ref()
                .map(super::sequences::sequence_type)
                .transpose()?;
            let def = super::sequences::sequence_def(name, schema, ty, sequence_options, owner)?;
            session.engine.core.create_sequence(def).await?;
            Output::Command("CREATE SEQUENCE".into())
        }
        Statement::CreateDatabase {
            db_name,
            if_not_exists,
            ..
        } => {
            let name = table_name(db_name)?;
            let databases = session.engine.databases()?;
            match databases.create(&name).await {
                Err(e) if *if_not_exists && e.sqlstate() == "42P04" => session
                    .notices
                    .push(format!("database \"{name}\" already exists, skipping")),
                other => other?,
            }
            Output::Command("CREATE DATABASE".into())
        }
        Statement::Drop {
            object_type: ObjectType::Database,
            if_exists,
            names,
            ..
        } => {
            let databases = session.engine.databases()?;
            for n in names {
                let name = table_name(n)?;
                if !databases.drop_database(&name, session.database()).await? {
                    if !*if_exists {
                        return Err(Error::Detailed {
                            code: "3D000",
                            message: format!("database \"{name}\" does not exist"),
                            detail: String::new(),
                        });
                    }
                    session
                        .notices
                        .push(format!("database \"{name}\" does not exist, skipping"));
                }
            }
            Output::Command("DROP DATABASE".into())
        }
        Statement::CreateSchema {
            schema_name,
            if_not_exists,
            ..
        } => super::schemas::create(session, schema_name, *if_not_exists).await?,
        Statement::Drop {
            object_type: ObjectType::Schema,
            if_exists,
            names,
            cascade,
            ..
        } => super::schemas::drop(session, names, *if_exists, *cascade).await?,
        Statement::Drop {
            object_type: ObjectType::Index,
            if_exists,
            names,
            ..
        } => super::indexes::drop_indexes(session, names, *if_exists).await?,
        Statement::Drop {
            object_type: ObjectType::Sequence,
            if_exists,
            names,
            ..
        } => {
            let core = &session.engine.core;
            let mut found = Vec::new();
            for n in names {
                let name = table_name(n)?;
                match core.sequence(&name).await {
                    Ok(_) => found.push(name),
                    Err(_) if *if_exists => session
                        .notices
                        .push(format!("sequence \"{name}\" does not exist, skipping")),
                    Err(_) => {
                        return Err(Error::UndefinedTable(name));
                    }
                }
            }
            for name in found {
                core.drop_sequence(&name).await?;
            }
            Output::Command("DROP SEQUENCE".into())
        }
        Statement::Insert(ins) => insert(session, ins).await?,
        Statement::Update(up) => update(session, up).await?,
        Statement::Delete(del) => delete(session, del).await?,
        Statement::Set(s) => set_variable(session, s)?,
        Statement::ShowVariable { variable } if show_name(variable) == "vectorgate.sync_status" => {
            sync_status(session).await?
        }
        Statement::ShowVariable { variable } => show(session, variable)?,
        Statement::Reset(_) | Statement::Discard { .. } => {
            let tag = if matches!(stmt, Statement::Discard { .. }) {
                "DISCARD ALL"
            } else {
                "RESET"
            };
            if let Statement::Reset(r) = stmt {
                let text = r.to_string();
                let name = text.trim_start_matches("RESET").trim();
                if name.eq_ignore_ascii_case("ALL") {
                    session.reset_all();
                } else {
                    session.set(name, None);
                }
            } else {
                session.reset_all();
                session.sql_prepared.clear();
            }
            Output::Command(tag.into())
        }
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => match super::copy::start(session, source, *to, target, options, legacy_options)? {
            super::copy::Started::In(copy) => {
                let (columns, binary) = (copy.columns(), copy.binary());
                *session.copy.lock() = Some(*copy);
                Output::CopyIn { columns, binary }
            }
            super::copy::Started::Out {
                query,
                names,
                options,
            } => Output::CopyOut {
                rows: Box::new(session.query(*query).await?),
                names,
                options,
            },
        },
        Statement::StartTransaction { modes, .. } => {
            let read_only = transaction_modes(session, modes, false)?.unwrap_or(false);
            if !session.tx.begin(read_only) {
                session
                    .notices
                    .push_warning("25001", "there is already a transaction in progress");
            }
            Output::TransactionStart("BEGIN".into())
        }
        Statement::Commit { chain: true, .. } | Statement::Rollback { chain: true, .. } => {
            return Err(Error::FeatureNotSupported(
                "AND CHAIN is not supported by vectorgate".into(),
            ));
        }
        Statement::Commit { .. } => match session.tx.take() {
            None => {
                session
                    .notices
                    .push_warning("25P01", "there is no transaction in progress");
                Output::TransactionEnd("COMMIT".into())
            }
            // A failed block can only roll back, whatever the client asks.
            Some(tx) if tx.failed() => {
                tx.abandon(&session.engine.core).await;
                Output::TransactionEnd("ROLLBACK".into())
            }
            Some(tx) => {
                crate::engine::write::commit_block(&session.engine.core, tx, &session.notices)
                    .await?;
                Output::TransactionEnd("COMMIT".into())
            }
        },
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => {
            session.tx.rollback_to(&ident_name(name))?;
            Output::Command("ROLLBACK".into())
        }
        Statement::Rollback { .. } => {
            if let Some(tx) = session.tx.take() {
                tx.abandon(&session.engine.core).await;
            } else {
                session
                    .notices
                    .push_warning("25P01", "there is no transaction in progress");
            }
            Output::TransactionEnd("ROLLBACK".into())
        }
        Statement::Savepoint { name } => {
            session.tx.savepoint(&ident_name(name))?;
            Output::Command("SAVEPOINT".into())
        }
        Statement::Deallocate { name, .. } => super::prepare::deallocate(session, name),
        Statement::Prepare {
            name,
            data_types,
            statement,
        } => super::prepare::prepare(session, name, data_types, statement).await?,
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            into,
            using,
            ..
        } if into.is_empty() && using.is_empty() => {
            let stmt = super::prepare::bound(session, name, parameters)?;
            Box::pin(session.execute(stmt)).await?
        }
        Statement::Lock(lock) => lock_tables(session, lock)?,
        Statement::ReleaseSavepoint { name } => {
            session.tx.release(&ident_name(name))?;
            Output::Command("RELEASE".into())
        }
        Statement::Query(q) if super::writable_cte::modifies(q) => {
            Box::pin(super::writable_cte::run(session, q)).await?
        }
        Statement::Query(q) if super::apply::is_marked(q) => {
            Box::pin(super::apply::run(session, q)).await?
        }
        Statement::Call(f) if let Some(m) = super::maintenance::stand_in(f) => {
            super::maintenance::run(session, &m).await?
        }
        Statement::Explain { .. } => {
            if let Some(note) = super::pgvector::exact_order_note(stmt, &session.engine.core) {
                session.notices.push(note);
            }
            return Ok(None);
        }
        Statement::Query(_) | Statement::ExplainTable { .. } => {
            return Ok(None);
        }
        Statement::ShowTables { .. } | Statement::ShowColumns { .. } => return Ok(None),
        other => {
            let text = other.to_string();
            let verb: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(Error::FeatureNotSupported(format!(
                "{verb} is not supported by vectorgate"
            )));
        }
    }))
}

/// `LOCK TABLE`: inside a block, of tables that exist. `ACCESS SHARE` (what `pg_dump`
/// takes: it only keeps DDL away from the table until the block ends) is taken with a
/// NOTICE that it is not held; a stronger mode is refused, since the writers it would
/// hold off would not wait.
fn lock_tables(session: &Session, lock: &datafusion::sql::sqlparser::ast::Lock) -> Result<Output> {
    use datafusion::sql::sqlparser::ast::LockTableMode;
    if !session.tx.active() {
        return Err(Error::Detailed {
            code: "25P01",
            message: "LOCK TABLE can only be used in transaction blocks".into(),
            detail: String::new(),
        });
    }
    let mut names = Vec::with_capacity(lock.tables.len());
    for t in &lock.tables {
        let name = table_name(&t.name)?;
        session.engine.core.table(&name)?;
        names.push(name);
    }
    match &lock.lock_mode {
        Some(LockTableMode::AccessShare) => {
            session.notices.push(format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE is not held by vectorgate: an ALTER TABLE, DROP TABLE or TRUNCATE of it does not wait for this transaction",
                names.join(", ")
            ));
            Ok(Output::Command("LOCK TABLE".into()))
        }
        mode => Err(Error::FeatureNotSupported(format!(
            "LOCK TABLE IN {} MODE is not supported by vectorgate (only ACCESS SHARE is taken): use SELECT ... FOR UPDATE or advisory locks",
            mode.as_ref()
                .map_or("ACCESS EXCLUSIVE".to_string(), ToString::to_string)
        ))),
    }
}

/// Postgres folds unquoted identifiers to lower case.
pub fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// The catalog name of the relation a (possibly schema-qualified) name refers to
/// ([`crate::store::qualified`]).
pub(crate) fn table_name(name: &ObjectName) -> Result<String> {
    relation(name).map(|(_, key)| key)
}

/// The schema (`None`: `public`) and catalog name of the relation a name refers to.
/// A schema-qualified name of a schema that does not exist names no relation (42P01
/// when it is looked up); the system schemas hold none of the proxy's.
pub(crate) fn relation(name: &ObjectName) -> Result<(Option<String>, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(ident_name))
        .collect();
    match parts.as_slice() {
        [t] => Ok((None, t.clone())),
        [s, t] if s == "public" => Ok((None, t.clone())),
        [d, s, t] if s == "public" && d == super::DATABASE => Ok((None, t.clone())),
        [s, t] | [_, s, t] if !super::schemas::is_system(s) => {
            Ok((Some(s.clone()), crate::store::qualified(s, t)))
        }
        _ => Err(Error::UndefinedTable(name.to_string())),
    }
}

pub(super) fn parse_type(text: &str) -> Result<ColumnType> {
    let t = text.trim().to_ascii_lowercase();
    let t = t
        .trim_start_matches("public.")
        .trim_start_matches("pg_catalog.");
    if t.ends_with(']')
        && ["vector", "halfvec", "sparsevec", "bit"]
            .iter()
            .any(|k| t.starts_with(k))
    {
        return Err(Error::FeatureNotSupported(format!(
            "arrays of pgvector's types ({t}) are not supported: keep each vector in a column of its own, or in rows of a table of its own"
        )));
    }
    if let Some(element) = t.strip_suffix("[]") {
        let element = element.trim_end();
        if element.ends_with(']') {
            return Err(Error::FeatureNotSupported(format!(
                "multidimensional arrays ({t}) are not supported: declare {}[] and keep one dimension",
                element.split('[').next().unwrap_or(element).trim()
            )));
        }
        // Strings of a limited length are text; the length is the column's
        // ([`character_type`]), checked element by element on every write.
        let element = match element.split_once('(') {
            Some((base, _))
                if [
                    "varchar",
                    "character varying",
                    "character",
                    "char",
                    "bpchar",
                ]
                .contains(&base.trim()) =>
            {
                base.trim()
            }
            _ => element,
        };
        let element = match parse_type(element) {
            Err(Error::UndefinedObject(_)) => {
                return Err(Error::UndefinedObject(format!(
                    "type \"{t}\" does not exist"
                )));
            }
            other => other?,
        };
        return element.array_of().ok_or_else(|| {
            Error::FeatureNotSupported(format!(
                "arrays of type {element_name} are not supported",
                element_name = t.trim_end_matches("[]")
            ))
        });
    }
    for (kind, make) in [
        ("vector", ColumnType::Vector as fn(usize) -> ColumnType),
        ("halfvec", ColumnType::HalfVec),
        ("sparsevec", ColumnType::SparseVec),
    ] {
        let Some(rest) = t.strip_prefix(kind) else {
            continue;
        };
        let n = rest.trim();
        if !(n.is_empty() || n.starts_with('(')) {
            continue;
        }
        let n = n.trim_start_matches('(').trim_end_matches(')').trim();
        // pgvector's types without a dimension take vectors of any length.
        if n.is_empty() {
            return Ok(make(0));
        }
        let n: usize = n.parse().map_err(|_| {
            Error::InvalidTableDefinition(format!(
                "{kind} columns need a dimension, as in {kind}(384)"
            ))
        })?;
        let most = if kind == "sparsevec" {
            crate::types::sparse::MAX_DIM
        } else {
            65_535
        };
        if n == 0 || n > most {
            return Err(Error::InvalidParameter(format!(
                "{kind} dimension must be between 1 and {most}, got {n}"
            )));
        }
        return Ok(make(n));
    }
    // `bit(n)` (`bit` is `bit(1)`), `bit varying(n)`/`varbit(n)` (no length: any).
    let bit_length = |rest: &str| -> Result<Option<usize>> {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(None);
        }
        let n = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .filter(|n| (1..=83_886_080).contains(n))
            .ok_or_else(|| Error::InvalidParameter(format!("invalid type \"{text}\"")))?;
        Ok(Some(n))
    };
    if let Some(rest) = t
        .strip_prefix("bit varying")
        .or_else(|| t.strip_prefix("varbit"))
        && !rest.ends_with("[]")
    {
        return Ok(ColumnType::VarBit(bit_length(rest)?.unwrap_or(0)));
    }
    if let Some(rest) = t.strip_prefix("bit")
        && (rest.trim().is_empty() || rest.trim().starts_with('('))
        && !rest.ends_with("[]")
    {
        return Ok(ColumnType::Bit(bit_length(rest)?.unwrap_or(1)));
    }
    let base = match t.find('(') {
        Some(i) if !t.ends_with("[]") => t[..i].trim().to_string(),
        _ => t.to_string(),
    };
    Ok(match base.as_str() {
        "bigint" | "int8" | "bigserial" => ColumnType::BigInt,
        "int" | "integer" | "int4" | "serial" => ColumnType::Int,
        "smallint" | "int2" => ColumnType::SmallInt,
        "real" | "float4" => ColumnType::Real,
        // `float(p)`: a `real` up to 24 bits of precision.
        "float"
            if t[base.len()..]
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .trim()
                .parse::<u8>()
                .is_ok_and(|p| p <= 24) =>
        {
            ColumnType::Real
        }
        "double precision" | "double" | "float8" | "float" => ColumnType::Double,
        "boolean" | "bool" => ColumnType::Bool,
        "text" | "varchar" | "character varying" | "char" | "character" | "string" | "bpchar"
        | "name" => ColumnType::Text,
        "uuid" => ColumnType::Uuid,
        "bytea" => ColumnType::Bytea,
        "jsonb" => ColumnType::Jsonb,
        "json" => ColumnType::Json,
        "numeric" | "decimal" => {
            let (p, s) = match t.find('(') {
                Some(i) => {
                    let inner = t[i + 1..].trim_end_matches(')');
                    let mut it = inner.split(',').map(|x| x.trim().parse::<u8>());
                    match (it.next(), it.next()) {
                        (Some(Ok(p)), Some(Ok(s))) => (p, s),
                        (Some(Ok(p)), None) => (p, 0),
                        _ => {
                            return Err(Error::Syntax(format!(
                                "invalid numeric type modifier in \"{text}\""
                            )));
                        }
                    }
                }
                None => (38, 10),
            };
            if p == 0 || p > 38 || s > p {
                return Err(Error::InvalidParameter(format!(
                    "NUMERIC precision must be between 1 and 38 and scale between 0 and the precision, got ({p},{s})"
                )));
            }
            ColumnType::Numeric(p, s as i8)
        }
        "timestamp" | "timestamp without time zone" => ColumnType::Timestamp,
        "timestamptz" | "timestamp with time zone" => ColumnType::TimestampTz,
        "date" => ColumnType::Date,
        _ => {
            // Postgres folds an unquoted type name to lower case.
            let name = if text.trim().starts_with('"') {
                text.trim().trim_matches('"').to_string()
            } else {
                t.to_string()
            };
            return Err(Error::UndefinedObject(format!(
                "type \"{name}\" does not exist"
            )));
        }
    })
}

pub(super) fn option_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
            SqlValue::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// A new table's name: Postgres keeps names of up to 63 bytes (and shortens longer
/// ones, which vectorgate refuses instead).
pub(crate) fn check_table_name(name: &str) -> Result<()> {
    if name.len() > 63 {
        return Err(Error::FeatureNotSupported(format!(
            "table name \"{name}\" is longer than 63 bytes"
        )));
    }
    Ok(())
}

/// A column's declared character type: `varchar(n)` / `character varying(n)` gives
/// `Some(n)` (checked on every write, 22001 above it), bare `varchar` `Some(0)`; the
/// same for an array of them, `varchar(n)[]` (each element checked); any other type
/// `None`. A `char(n)` is kept as `text` without its blank padding or length check,
/// with a NOTICE (pushed to `notices`) saying so.
pub(crate) fn character_type(
    column: &str,
    type_name: &str,
    notices: &super::Notices,
) -> Result<Option<u32>> {
    let t = type_name.trim();
    let rest = ["character varying", "varchar"]
        .iter()
        .find_map(|p| t.strip_prefix(p));
    if let Some(rest) = rest {
        let rest = rest.trim();
        let rest = rest.strip_suffix("[]").unwrap_or(rest).trim();
        if rest.is_empty() {
            return Ok(Some(0));
        }
        let n: i64 = rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| Error::Syntax(format!("invalid type \"{t}\"")))?;
        if n < 1 {
            return Err(Error::InvalidParameter(
                "length for type varchar must be at least 1".into(),
            ));
        }
        if n > 10_485_760 {
            return Err(Error::InvalidParameter(
                "length for type varchar cannot exceed 10485760".into(),
            ));
        }
        return Ok(Some(n as u32));
    }
    if ["char(", "character(", "bpchar("]
        .iter()
        .any(|p| t.starts_with(p))
    {
        notices.push(format!(
            "column \"{column}\" is stored as text: {t} is neither blank-padded nor length-checked (a longer value is kept whole)"
        ));
    }
    Ok(None)
}

/// A value for a `varchar(n)` column: as Postgres assigns it, a longer string is an
/// error (22001) unless what is past `n` is spaces, which are cut off.
pub(crate) fn fit_varchar(v: Value, n: u32) -> Result<Value> {
    match v {
        Value::Text(s) => fit_str(s, n).map(Value::Text),
        // An array of them (`varchar(n)[]`): each element.
        Value::TextArray(items) => items
            .into_iter()
            .map(|s| s.map(|s| fit_str(s, n)).transpose())
            .collect::<Result<_>>()
            .map(Value::TextArray),
        Value::Array(items) => items
            .into_iter()
            .map(|e| fit_varchar(e, n))
            .collect::<Result<_>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

fn fit_str(mut s: String, n: u32) -> Result<String> {
    match s.char_indices().nth(n as usize) {
        None => Ok(s),
        Some((at, _)) if s[at..].chars().all(|c| c == ' ') => {
            s.truncate(at);
            Ok(s)
        }
        Some(_) => Err(Error::Detailed {
            code: "22001",
            message: format!("value too long for type character varying({n})"),
            detail: String::new(),
        }),
    }
}

async fn create_table(session: &Session, ct: &CreateTable) -> Result<Output> {
    let (schema, name) = relation(&ct.name)?;
    super::schemas::require(&session.engine.core, schema.as_deref())?;
    if ct.query.is_some() || ct.like.is_some() {
        return Err(Error::FeatureNotSupported(
            "CREATE TABLE AS and LIKE are not supported".into(),
        ));
    }
    check_table_name(
        schema
            .as_ref()
            .and_then(|s| name.strip_prefix(&format!("{s}.")))
            .unwrap_or(&name),
    )?;
    let shared = &session.engine.core;
    if shared.has_table(&name) {
        if ct.if_not_exists {
            return Ok(Output::Command("CREATE TABLE".into()));
        }
        return Err(Error::DuplicateTable(name));
    }
    let mut columns = Vec::new();
    let mut primary_key: Vec<usize> = Vec::new();
    // UNIQUE constraints: an optional name and the columns.
    let mut uniques: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    // Columns that own a sequence (serial types, identity): (column, options, identity).
    let mut owned: Vec<(usize, Vec<SequenceOptions>, Option<char>)> = Vec::new();
    let mut defaults = Vec::new();
    // CHECK and FOREIGN KEY constraints, added once the columns are known.
    let mut checks = Vec::new();
    let mut foreign_keys = Vec::new();
    for (i, c) in ct.columns.iter().enumerate() {
        let cname = ident_name(&c.name);
        if crate::store::SYSTEM_COLUMNS.contains(&cname.as_str()) {
            return Err(Error::SystemColumn(cname));
        }
        if columns.iter().any(|x: &ColumnDef| x.name == cname) {
            return Err(Error::InvalidTableDefinition(format!(
                "column \"{cname}\" specified more than once"
            )));
        }
        let type_name = c.data_type.to_string().to_ascii_lowercase();
        let serial = match type_name.as_str() {
            "serial" | "serial4" => Some(ColumnType::Int),
            "smallserial" | "serial2" => Some(ColumnType::SmallInt),
            "bigserial" | "serial8" => Some(ColumnType::BigInt),
            _ => None,
        };
        let ty = match &serial {
            Some(t) => {
                owned.push((i, vec![], None));
                t.clone()
            }
            None => parse_type(&c.data_type.to_string())?,
        };
        let varchar = character_type(&cname, &type_name, &session.notices)?;
        let mut nullable = serial.is_none();
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::PrimaryKey(_) => {
                    primary_key.push(i);
                    nullable = false;
                }
                ColumnOption::Default(e) => defaults.push((i, e.clone())),
                ColumnOption::Generated {
                    generated_as: generated @ (GeneratedAs::Always | GeneratedAs::ByDefault),
                    sequence_options,
                    generation_expr: None,
                    ..
                } => {
                    nullable = false;
                    let always = matches!(generated, GeneratedAs::Always);
                    owned.push((
                        i,
                        sequence_options.clone().unwrap_or_default(),
                        Some(if always { 'a' } else { 'd' }),
                    ));
                }
                ColumnOption::Null => {}
                ColumnOption::Unique(u) => {
                    refuse_nulls_not_distinct(u)?;
                    uniques.push((u.name.as_ref().map(ident_name), vec![i]));
                }
                ColumnOption::Check(c) => checks.push(c.clone()),
                ColumnOption::ForeignKey(fk) => foreign_keys.push((vec![i], fk.clone())),
                other => {
                    return Err(Error::FeatureNotSupported(format!(
                        "column option {other} is not supported"
                    )));
                }
            }
        }
        columns.push(ColumnDef {
            name: cname,
            ty,
            nullable,
            default: None,
            identity: None,
            stored: None,
            varchar,
        });
    }
    for tc in &ct.constraints {
        match tc {
            TableConstraint::PrimaryKey(pk) => {
                if !primary_key.is_empty() {
                    return Err(Error::InvalidTableDefinition(format!(
                        "multiple primary keys for table \"{name}\" are not allowed"
                    )));
                }
                for idx in constraint_columns(&columns, &pk.columns)? {
                    columns[idx].nullable = false;
                    primary_key.push(idx);
                }
            }
            TableConstraint::Unique(u) => {
                refuse_nulls_not_distinct(u)?;
                let cols = constraint_columns(&columns, &u.columns)?;
                uniques.push((u.name.as_ref().map(ident_name), cols));
            }
            TableConstraint::Check(c) => checks.push(c.clone()),
            TableConstraint::ForeignKey(fk) => {
                let cols = super::constraints::key_columns(&columns, fk)?;
                foreign_keys.push((cols, fk.clone()));
            }
            _ => {
                return Err(Error::FeatureNotSupported(
                    "only PRIMARY KEY, UNIQUE, CHECK and FOREIGN KEY table constraints are supported".into(),
                ));
            }
        }
    }
    if primary_key.is_empty() {
        // Rows are stored and found by key: a table without one gets a hidden key of
        // random UUIDs (spread over the cluster's partitions as evenly as they come).
        primary_key.push(columns.len());
        columns.push(ColumnDef {
            name: crate::store::ROW_ID.into(),
            ty: ColumnType::Uuid,
            nullable: false,
            default: Some("gen_random_uuid()".into()),
            identity: None,
            stored: None,
            varchar: None,
        });
    }
    for &k in &primary_key {
        if !columns[k].ty.is_key_type() {
            return Err(Error::InvalidTableDefinition(format!(
                "column \"{}\" of type {} cannot be part of a primary key",
                columns[k].name,
                columns[k].ty.sql_name()
            )));
        }
    }
    // Every vector column with a declared dimension is held by the index, and every
    // sparsevec column (when the distance is one the index serves); a vector without a
    // dimension is stored and searched by reading the rows.
    for c in columns.iter().filter(|c| c.ty.vector_dims() == Some(0)) {
        session.notices.push(format!(
            "column \"{}\" has no dimension: the vector index cannot hold it, so searches of it read every row (exact, but slower as the table grows); a column declared with one, as in vector(1536), is indexed",
            c.name
        ));
    }
    if columns
        .iter()
        .any(|c| c.name == super::vector_search::DISTANCE)
    {
        return Err(Error::InvalidTableDefinition(
            "a column may not be named \"distance\": vector_search adds that column".into(),
        ));
    }
    let mut options = BTreeMap::new();
    if let CreateTableOptions::With(opts) = &ct.table_options {
        for o in opts {
            match o {
                SqlOption::KeyValue { key, value } => {
                    options.insert(key.value.to_ascii_lowercase(), option_text(value));
                }
                other => {
                    return Err(Error::FeatureNotSupported(format!(
                        "table option {other} is not supported"
                    )));
                }
            }
        }
    } else if !matches!(ct.table_options, CreateTableOptions::None) {
        return Err(Error::FeatureNotSupported(
            "only WITH (...) table options are supported".into(),
        ));
    }
    let index_options = IndexOptions::parse(&options)?;
    if let Some(t) = &index_options.tenant_key {
        let Some(col) = columns.iter().find(|c| &c.name == t) else {
            return Err(Error::UndefinedColumn(t.clone()));
        };
        if !matches!(col.ty, ColumnType::Text | ColumnType::Uuid) {
            return Err(Error::InvalidTableDefinition(format!(
                "tenant_key column \"{t}\" must be text or uuid"
            )));
        }
    }
    for name in options
        .get("payload_exclude")
        .map(|l| l.split(',').map(str::trim).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let Some(col) = columns.iter().find(|c| c.name == name) else {
            return Err(Error::UndefinedColumn(name.to_string()));
        };
        if col.ty.is_vector() || index_options.tenant_key.as_deref() == Some(name) {
            return Err(Error::InvalidTableDefinition(format!(
                "payload_exclude cannot name \"{name}\": {}",
                if col.ty.is_vector() {
                    "it is a vector column"
                } else {
                    "it is the tenant_key"
                }
            )));
        }
    }
    let distance = match options.get("distance") {
        None => Distance::Cosine,
        Some(d) => Distance::parse(d).ok_or_else(|| {
            Error::InvalidParameter(format!("unknown distance \"{d}\": use cosine, l2 or dot"))
        })?,
    };
    let mut def = TableDef {
        stored: shared.storage_name_for(&name),
        pk_constraint: None,
        name: name.clone(),
        schema,
        columns,
        primary_key,
        vector_column: None,
        distance,
        more_vectors: vec![],
        options,
        unique: vec![],
        checks: vec![],
        foreign_keys: vec![],
        json_indexes: vec![],
        indexes: vec![],
    };
    let indexed_vectors = (0..def.columns.len())
        .filter(|&c| def.index_holds(c, distance))
        .map(|c| (c, distance))
        .collect();
    def.set_vectors(indexed_vectors);
    for (cname, cols) in uniques {
        super::constraints::add_unique(&mut def, cname, cols)?;
    }
    for c in &checks {
        super::constraints::add_check(session, &mut def, c)?;
    }
    for (cols, fk) in &foreign_keys {
        super::constraints::add_foreign_key(session, &mut def, cols, fk)?;
    }
    // The sequences first (a default names one), dropped again if the table fails.
    let mut sequences = Vec::new();
    for (i, opts, identity) in owned {
        let col = def.columns[i].name.clone();
        if !matches!(
            def.columns[i].ty,
            ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt
        ) {
            return Err(Error::InvalidTableDefinition(format!(
                "identity column type must be smallint, integer, or bigint (column \"{col}\")"
            )));
        }
        let seq = super::sequences::sequence_def(
            format!("{name}_{col}_seq"),
            def.schema.clone(),
            Some(def.columns[i].ty.clone()),
            &opts,
            Some((def.stored_name().to_string(), col)),
        )?;
        def.columns[i].default = Some(format!("nextval('{}'::regclass)", seq.name));
        def.columns[i].identity = identity;
        sequences.push(seq);
    }
    let made = async {
        for seq in &sequences {
            shared.create_sequence(seq.clone()).await?;
        }
        for (i, e) in defaults {
            let text = super::defaults::check(session, &def, i, &e).await?;
            def.columns[i].default = Some(text);
        }
        crate::engine::ddl::create_table(shared, def, &session.notices).await
    }
    .await;
    if let Err(e) = made {
        for seq in &sequences {
            if shared.has_sequence(&seq.name) {
                let _ = shared.drop_sequence(&seq.name).await;
            }
        }
        return Err(e);
    }
    Ok(Output::Command("CREATE TABLE".into()))
}

async fn drop_tables(
    session: &Session,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<Output> {
    let core = &session.engine.core;
    let mut targets = Vec::new();
    for n in names {
        let name = table_name(n)?;
        match core.has_table(&name) {
            true => targets.push(name),
            false if if_exists => session
                .notices
                .push(format!("table \"{name}\" does not exist, skipping")),
            false => return Err(Error::UndefinedTable(name)),
        }
    }
    drop_table_keys(session, targets, cascade).await
}

/// Drop the tables of these catalog names, which exist; with `cascade`, the foreign
/// keys of other tables that reference them too (2BP01 without).
pub(crate) async fn drop_table_keys(
    session: &Session,
    targets: Vec<String>,
    cascade: bool,
) -> Result<Output> {
    let core = &session.engine.core;
    // Foreign keys of tables that stay, referencing one that goes: CASCADE drops them.
    let mut dependents = Vec::new();
    for name in &targets {
        let these: Vec<_> = super::constraints::referencing(core, name)
            .into_iter()
            .filter(|(child, _)| !targets.contains(&child.name))
            .collect();
        if !these.is_empty() && !cascade {
            let what = format!("table {name}");
            return Err(super::constraints::dependents_error(&what, &what, &these));
        }
        dependents.extend(these);
    }
    super::constraints::drop_foreign_keys(session, &dependents).await?;
    // The sequences their serial and identity columns own go with them.
    let sequences = core.rows.list_sequences().await?;
    for name in targets {
        let stored = core.table(&name)?.stored_name().to_string();
        crate::engine::ddl::drop_table(core, &name).await?;
        for seq in &sequences {
            // A sequence's owner is named by the table's stored name, which RENAME keeps.
            if seq.owned_by.as_ref().is_some_and(|(t, _)| *t == stored) {
                core.drop_sequence(&seq.name).await?;
            }
        }
    }
    Ok(Output::Command("DROP TABLE".into()))
}

/// Run a query and collect its rows as values.
pub(crate) async fn collect_values(
    session: &Session,
    sql: &str,
) -> Result<(Vec<Vec<Value>>, usize)> {
    // Inside a data-modifying WITH, the CTEs before this statement are in scope.
    let sql = match session.cte_prefix.lock().as_deref() {
        None => sql.to_string(),
        Some(prefix) => match sql.get(..5) {
            Some(w) if w.eq_ignore_ascii_case("WITH ") => format!("{prefix}, {}", &sql[5..]),
            _ => format!("{prefix} {sql}"),
        },
    };
    let mut stmts = session.engine.parse(&sql)?;
    let stmt = stmts.pop().ok_or_else(|| Error::internal("empty query"))?;
    let plan = session.plan(stmt).await?;
    let df = session.ctx.execute_logical_plan(plan).await?;
    let width = df.schema().fields().len();
    let batches: Vec<RecordBatch> = df.execute_stream().await?.try_collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        let cols: Vec<&ArrayRef> = b.columns().iter().collect();
        for r in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| value_from_array(c, r))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
    }
    Ok((out, width))
}

/// The rows of `VALUES (...), (...)` when every expression is a literal, evaluated
/// without planning a query (the common shape of an INSERT, and the fast one).
fn literal_values(q: &datafusion::sql::sqlparser::ast::Query) -> Option<(Vec<Vec<Value>>, usize)> {
    use datafusion::sql::sqlparser::ast::SetExpr;
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Values(values) = q.body.as_ref() else {
        return None;
    };
    let width = values.rows.first().map(|r| r.len())?;
    let mut out = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.len() != width {
            return None;
        }
        out.push(row.iter().map(literal_value).collect::<Option<Vec<_>>>()?);
    }
    Some((out, width))
}

/// The columns one row of an INSERT gives values for.
type Given = Vec<usize>;

/// The rows of a `VALUES` list in which some item is `DEFAULT`: each row's values and
/// the columns they are for (the `DEFAULT` ones left out); items that are not literals
/// (`gen_random_uuid()`, `1 + 1`) are evaluated by a query per such row. `None` when no
/// item is `DEFAULT`.
async fn without_defaults(
    session: &Session,
    q: &datafusion::sql::sqlparser::ast::Query,
    targets: &[usize],
) -> Result<Option<(Vec<Vec<Value>>, Vec<Given>)>> {
    let Some((rows, given)) = default_items(q, targets) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.iter().all(|i| i.is_ok()) {
            out.push(row.into_iter().flatten().collect());
            continue;
        }
        let exprs: Vec<String> = row
            .iter()
            .map(|i| match i {
                Ok(_) => "NULL".to_string(),
                Err(e) => e.to_string(),
            })
            .collect();
        let (mut found, _) =
            collect_values(session, &format!("SELECT {}", exprs.join(", "))).await?;
        let computed = found.pop().unwrap_or_default();
        out.push(
            row.into_iter()
                .zip(computed)
                .map(|(i, v)| i.unwrap_or(v))
                .collect(),
        );
    }
    Ok(Some((out, given)))
}

/// [`without_defaults`]' rows as written: literals as values, other items as they are.
#[allow(clippy::type_complexity)]
fn default_items(
    q: &datafusion::sql::sqlparser::ast::Query,
    targets: &[usize],
) -> Option<(Vec<Vec<std::result::Result<Value, SqlExpr>>>, Vec<Given>)> {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let is_default = |e: &SqlExpr| matches!(e, SqlExpr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"));
    let SetExpr::Values(values) = q.body.as_ref() else {
        return None;
    };
    if q.with.is_some() || !values.rows.iter().any(|r| r.iter().any(is_default)) {
        return None;
    }
    let mut out = Vec::with_capacity(values.rows.len());
    let mut given = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.len() > targets.len() {
            return None;
        }
        let mut vals = Vec::with_capacity(row.len());
        let mut cols = Vec::with_capacity(row.len());
        for (e, &c) in row.iter().zip(targets) {
            if !is_default(e) {
                vals.push(literal_value(e).ok_or_else(|| e.clone()));
                cols.push(c);
            }
        }
        out.push(vals);
        given.push(cols);
    }
    Some((out, given))
}

pub(crate) fn literal_value(e: &SqlExpr) -> Option<Value> {
    use datafusion::sql::sqlparser::ast::UnaryOperator;
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::Null => Some(Value::Null),
            SqlValue::Boolean(b) => Some(Value::Bool(*b)),
            SqlValue::Number(n, _) => n
                .parse::<i64>()
                .map(Value::Int)
                .ok()
                .or_else(|| n.parse::<f64>().ok().map(Value::Float)),
            SqlValue::SingleQuotedString(s) | SqlValue::EscapedStringLiteral(s) => {
                Some(Value::Text(s.clone()))
            }
            _ => None,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal_value(expr)? {
            Value::Int(i) => Some(Value::Int(-i)),
            Value::Float(f) => Some(Value::Float(-f)),
            _ => None,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => literal_value(expr),
        SqlExpr::Nested(inner) => literal_value(inner),
        // `'[1,2]'::vector`, as `pgvector::rewrite` leaves it: the column type decides.
        SqlExpr::Function(f)
            if f.name.to_string() == super::vector_ops::VECTOR
                && matches!(&f.args, datafusion::sql::sqlparser::ast::FunctionArguments::List(l) if l.args.len() == 1) =>
        {
            let datafusion::sql::sqlparser::ast::FunctionArguments::List(l) = &f.args else {
                return None;
            };
            match &l.args[0] {
                datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(
                    datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(inner),
                ) => match literal_value(inner)? {
                    v @ Value::Text(_) => Some(v),
                    _ => None,
                },
                _ => None,
            }
        }
        // `'...'::vector`, `CAST('...' AS text[])`: the column type decides.
        SqlExpr::Cast { expr, .. } => match literal_value(expr)? {
            v @ (Value::Text(_)
            | Value::Null
            | Value::Vector(_)
            | Value::IntArray(_)
            | Value::Array(_)
            | Value::TextArray(_)) => Some(v),
            _ => None,
        },
        SqlExpr::Array(arr) => {
            let items: Vec<Value> = arr.elem.iter().map(literal_value).collect::<Option<_>>()?;
            if items.iter().all(|v| matches!(v, Value::Int(_))) && !items.is_empty() {
                Some(Value::IntArray(
                    items
                        .into_iter()
                        .map(|v| if let Value::Int(i) = v { Some(i) } else { None })
                        .collect(),
                ))
            } else if items
                .iter()
                .all(|v| matches!(v, Value::Int(_) | Value::Float(_) | Value::Null))
                && items.iter().any(|v| matches!(v, Value::Float(_)))
                || items
                    .iter()
                    .all(|v| matches!(v, Value::Bool(_) | Value::Null))
                    && items.iter().any(|v| matches!(v, Value::Bool(_)))
            {
                // Numbers keep their precision (a float8[] column); a vector column
                // takes them as its elements.
                Some(Value::Array(items))
            } else if items
                .iter()
                .all(|v| matches!(v, Value::Text(_) | Value::Null))
            {
                Some(Value::TextArray(
                    items
                        .into_iter()
                        .map(|v| {
                            if let Value::Text(s) = v {
                                Some(s)
                            } else {
                                None
                            }
                        })
                        .collect(),
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A full row from values for `targets`, coerced to the column types and checked.
/// Columns left out take their defaults.
pub(crate) fn check_row(
    def: &TableDef,
    targets: &[usize],
    values: Vec<Value>,
    defaults: &Defaults,
) -> Result<Row> {
    let mut row: Row = vec![Value::Null; def.columns.len()];
    let given = &targets[..values.len().min(targets.len())];
    for (v, &c) in values.into_iter().zip(targets) {
        row[c] = coerce_into(def, c, v)?;
    }
    defaults.fill(&mut row, given)?;
    // A bigserial column left out of the statement gets a generated key.
    if let Some(c) = def
        .options
        .get(SERIAL_OPTION)
        .and_then(|name| def.column_index(name))
        && !given.contains(&c)
    {
        row[c] = Value::Int(next_serial());
    }
    check_not_null(def, &row)?;
    Ok(row)
}

/// The positions of a table constraint's columns (42703 for one the table lacks).
pub(super) fn constraint_columns(
    columns: &[ColumnDef],
    named: &[datafusion::sql::sqlparser::ast::IndexColumn],
) -> Result<Vec<usize>> {
    named
        .iter()
        .map(|ic| {
            let cname = match &ic.column.expr {
                SqlExpr::Identifier(id) => ident_name(id),
                other => other.to_string(),
            };
            columns
                .iter()
                .position(|c| c.name == cname)
                .ok_or(Error::UndefinedColumn(cname))
        })
        .collect()
}

/// UNIQUE NULLS NOT DISTINCT (a NULL equal to a NULL) is not enforced here: 0A000.
pub(super) fn refuse_nulls_not_distinct(
    u: &datafusion::sql::sqlparser::ast::UniqueConstraint,
) -> Result<()> {
    if matches!(
        u.nulls_distinct,
        datafusion::sql::sqlparser::ast::NullsDistinctOption::NotDistinct
    ) {
        return Err(Error::FeatureNotSupported(
            "UNIQUE NULLS NOT DISTINCT is not supported".into(),
        ));
    }
    Ok(())
}

/// 428C9 for a value an INSERT or UPDATE gives a `GENERATED ALWAYS AS IDENTITY` column
/// (COPY may write one, as pg_dump's restores do).
pub(crate) fn refuse_always_identity(
    def: &TableDef,
    columns: &[usize],
    update: bool,
) -> Result<()> {
    let Some(&c) = columns
        .iter()
        .find(|&&c| def.columns[c].identity == Some('a'))
    else {
        return Ok(());
    };
    let name = &def.columns[c].name;
    Err(Error::GeneratedAlways(if update {
        format!("column \"{name}\" can only be updated to DEFAULT")
    } else {
        format!("cannot insert a non-DEFAULT value into column \"{name}\"")
    }))
}

pub(crate) fn check_not_null(def: &TableDef, row: &Row) -> Result<()> {
    for (c, v) in def.columns.iter().zip(row) {
        if !c.nullable && v.is_null() {
            return Err(Error::NotNullViolation(format!(
                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                c.name, def.name
            )));
        }
    }
    Ok(())
}

pub(crate) fn coerce_into(def: &TableDef, col: usize, v: Value) -> Result<Value> {
    let v = coerce(v, &def.columns[col].ty).map_err(|e| match e {
        Error::DatatypeMismatch(m) => {
            Error::DatatypeMismatch(format!("{m} (column \"{}\")", def.columns[col].name))
        }
        other => other,
    })?;
    match def.columns[col].varchar {
        Some(n) if n > 0 => fit_varchar(v, n),
        _ => Ok(v),
    }
}

async fn insert(session: &Session, ins: &Insert) -> Result<Output> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(Error::FeatureNotSupported(
            "INSERT INTO a table function is not supported".into(),
        ));
    };
    let def = session.engine.core.table(&table_name(name)?)?;
    let on_conflict = match &ins.on {
        None => None,
        Some(OnInsert::OnConflict(oc)) => Some(oc),
        Some(other) => {
            return Err(Error::FeatureNotSupported(format!(
                "INSERT ...{other} is not supported (ON CONFLICT is)"
            )));
        }
    };
    let target = on_conflict
        .map(|oc| conflict_target(&def, oc))
        .transpose()?;
    let targets: Vec<usize> = if ins.columns.is_empty() {
        def.visible()
    } else {
        ins.columns
            .iter()
            .map(|c| {
                let n =
                    c.0.last()
                        .and_then(|p| p.as_ident())
                        .map(ident_name)
                        .unwrap_or_default();
                def.column_index(&n).ok_or(Error::UndefinedColumn(n))
            })
            .collect::<Result<_>>()?
    };
    let taken = match ins.source.as_deref() {
        Some(source) => super::sequences::take_nextvals_in_values(session, source).await?,
        None => None,
    };
    // `VALUES (..., DEFAULT, ...)`: each row names the columns it gives.
    let (values, width, given) = match taken.as_ref().or(ins.source.as_deref()) {
        // INSERT ... DEFAULT VALUES
        None => (vec![vec![]], 0, Some(vec![vec![]])),
        Some(source) => match without_defaults(session, source, &targets).await? {
            Some((values, given)) => (values, targets.len(), Some(given)),
            None => {
                let (values, width) = match literal_values(source) {
                    Some(v) => v,
                    None => collect_values(session, &source.to_string()).await?,
                };
                (values, width, None)
            }
        },
    };
    if width > targets.len() {
        return Err(Error::Syntax(
            "INSERT has more expressions than target columns".into(),
        ));
    }
    match &given {
        None => refuse_always_identity(&def, &targets[..width.min(targets.len())], false)?,
        Some(given) => {
            for g in given {
                refuse_always_identity(&def, g, false)?;
            }
        }
    }
    // Only the defaults some row needs are evaluated.
    let missing: Vec<usize> = (0..def.columns.len())
        .filter(|c| match &given {
            None => !targets[..width.min(targets.len())].contains(c),
            Some(given) => given.iter().any(|g| !g.contains(c)),
        })
        .collect();
    let defaults = Defaults::prepare(session, &def, missing, values.len()).await?;
    let rows = match given {
        None => values
            .into_iter()
            .map(|vals| check_row(&def, &targets, vals, &defaults))
            .collect::<Result<Vec<Row>>>()?,
        Some(given) => values
            .into_iter()
            .zip(given)
            .map(|(vals, cols)| check_row(&def, &cols, vals, &defaults))
            .collect::<Result<Vec<Row>>>()?,
    };
    let alias = ins.table_alias.as_ref().map(|a| a.alias.value.clone());
    // Checked before the write: a RETURNING that cannot be evaluated writes nothing.
    if let Some(items) = &ins.returning {
        returning(session, &def, alias.as_deref(), items, &[]).await?;
    }
    let (rows, mode) = match on_conflict {
        None => (rows, WriteMode::InsertNew),
        Some(oc) => (
            upsert_rows(
                session,
                &def,
                alias.as_deref(),
                &oc.action,
                target.unwrap_or(Target::Any),
                rows,
            )
            .await?,
            WriteMode::Upsert,
        ),
    };
    let n = rows.len();
    let Some(items) = &ins.returning else {
        write_rows(session, &def, rows, mode).await?;
        return Ok(Output::Command(format!("INSERT 0 {n}")));
    };
    write_rows(session, &def, rows.clone(), mode).await?;
    tagged(
        returning(session, &def, alias.as_deref(), items, &rows).await?,
        "INSERT 0",
    )
}

/// `plan` with every scan of `def`'s table reading `rows` instead (in the scan's own
/// schema, so the plan above it stays as planned).
fn reading_rows(
    plan: datafusion::logical_expr::LogicalPlan,
    def: &TableDef,
    rows: &[&Row],
) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::LogicalPlan;
    let cols: Vec<usize> = (0..def.columns.len()).collect();
    Ok(plan
        .transform_up(|node| match node {
            LogicalPlan::TableScan(mut scan)
                if scan.table_name.table() == def.relname()
                    && scan.table_name.schema().unwrap_or("public") == def.schema() =>
            {
                let schema = scan.source.schema();
                let batch = super::tables::rows_to_batch(def, &schema, &cols, rows)
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
                scan.source = datafusion::datasource::provider_as_source(Arc::new(table));
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// An ON CONFLICT target must name the primary key (its columns in any order, or its
/// constraint `<table>_pkey`); DO UPDATE needs one (as in Postgres).
/// What an `ON CONFLICT` clause names: the primary key, a UNIQUE constraint (or unique
/// index), or (DO NOTHING without a target) any of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    Key,
    Unique(usize),
    Any,
}

pub(crate) fn conflict_target(def: &TableDef, oc: &OnConflict) -> Result<Target> {
    let sorted = |mut c: Vec<usize>| {
        c.sort_unstable();
        c.dedup();
        c
    };
    let found = match &oc.conflict_target {
        None => {
            if matches!(oc.action, OnConflictAction::DoUpdate(_)) {
                return Err(Error::Syntax(
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name"
                        .into(),
                ));
            }
            Some(Target::Any)
        }
        Some(ConflictTarget::Columns(cols)) => {
            let named: Vec<usize> = cols
                .iter()
                .map(|c| {
                    let n = ident_name(c);
                    def.column_index(&n).ok_or(Error::UndefinedColumn(n))
                })
                .collect::<Result<_>>()?;
            let named = sorted(named);
            if named == sorted(def.primary_key.clone()) {
                Some(Target::Key)
            } else {
                def.unique
                    .iter()
                    .position(|u| sorted(u.columns.clone()) == named)
                    .map(Target::Unique)
            }
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            let n = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident_name)
                .unwrap_or_default();
            if n == def.pk_name() {
                Some(Target::Key)
            } else if let Some(u) = def.unique.iter().position(|u| u.name == n && !u.index_only) {
                Some(Target::Unique(u))
            } else {
                return Err(Error::UndefinedObject(format!(
                    "constraint \"{n}\" for table \"{}\" does not exist",
                    def.name
                )));
            }
        }
    };
    found.ok_or_else(|| {
        Error::InvalidColumnReference(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification"
                .into(),
        )
    })
}

/// What a row is known by for `target`: its key, its value of the UNIQUE constraint
/// (none with a NULL in it), or all of them. Encoded, each with what it belongs to.
fn identities(def: &TableDef, target: Target, row: &Row) -> Vec<Vec<u8>> {
    let unique = |i: usize| -> Option<Vec<u8>> {
        let values: Vec<Value> = def.unique[i]
            .columns
            .iter()
            .map(|&c| row[c].clone())
            .collect();
        if values.iter().any(Value::is_null) {
            return None;
        }
        let mut id = vec![1 + i as u8];
        id.extend(keys::encode(&values));
        Some(id)
    };
    let key = || {
        let mut id = vec![0];
        id.extend(keys::encode(&def.key_of(row)));
        id
    };
    match target {
        Target::Key => vec![key()],
        Target::Unique(i) => unique(i).into_iter().collect(),
        Target::Any => std::iter::once(key())
            .chain((0..def.unique.len()).filter_map(unique))
            .collect(),
    }
}

/// The stored row each proposed row conflicts with on `target`, as this session sees
/// the table.
async fn conflicting(
    session: &Session,
    def: &TableDef,
    target: Target,
    proposed: &[Row],
) -> Result<Vec<Option<Row>>> {
    let mut out: Vec<Option<Row>> = if target == Target::Key || target == Target::Any {
        let keys_: Vec<Vec<Value>> = proposed.iter().map(|r| def.key_of(r)).collect();
        session.get_rows(def, &keys_).await?
    } else {
        vec![None; proposed.len()]
    };
    let constraints: Vec<usize> = match target {
        Target::Key => vec![],
        Target::Unique(i) => vec![i],
        Target::Any => (0..def.unique.len()).collect(),
    };
    // A UNIQUE value's holder (a row key) is where the row that has it is.
    for i in constraints {
        let u = &def.unique[i];
        let mut wanted: Vec<(usize, Vec<u8>, Vec<Value>)> = Vec::new();
        for (at, r) in proposed.iter().enumerate() {
            let v: Vec<Value> = u.columns.iter().map(|&c| r[c].clone()).collect();
            if out[at].is_some() || v.iter().any(Value::is_null) {
                continue;
            }
            let value = keys::encode(&v);
            if let Err(Some(h)) = session
                .engine
                .core
                .rows
                .unique_swap(&u.space, &value, None, None)
                .await?
            {
                wanted.push((at, value, keys::decode(&h.key)?));
            }
        }
        let keys_: Vec<Vec<Value>> = wanted.iter().map(|w| w.2.clone()).collect();
        let rows = session.get_rows(def, &keys_).await?;
        for ((at, value, _), row) in wanted.into_iter().zip(rows) {
            // The holder's row as this session sees it, if it still has the value.
            if let Some(row) = row.filter(|r| {
                let v: Vec<Value> = u.columns.iter().map(|&c| r[c].clone()).collect();
                keys::encode(&v) == value
            }) {
                out[at] = Some(row);
            }
        }
    }
    Ok(out)
}

/// The rows an `INSERT ... ON CONFLICT` writes: proposed rows that conflict with no
/// stored row on the target (the first of several that conflict with each other), and
/// for DO UPDATE the stored rows they conflict with, with the SET applied where its
/// WHERE holds (`EXCLUDED` is the proposed row). With a UNIQUE constraint as the target,
/// a proposed row whose key is taken is still a 23505. The proposed keys are locked
/// before the stored rows are read, and the rows met on a UNIQUE value after (read again
/// if they changed meanwhile): two sessions of one proxy upserting one key take turns,
/// as in Postgres (see [`crate::engine::row_locks`]).
pub(crate) async fn upsert_rows(
    session: &Session,
    def: &TableDef,
    alias: Option<&str>,
    action: &OnConflictAction,
    target: Target,
    proposed: Vec<Row>,
) -> Result<Vec<Row>> {
    let seen = session.rows_seen();
    let proposed_keys: Vec<Vec<Value>> = proposed.iter().map(|r| def.key_of(r)).collect();
    session
        .lock_rows(def, proposed_keys.iter().map(Vec::as_slice), seen)
        .await?;
    let existing = loop {
        let seen = session.rows_seen();
        let existing = conflicting(session, def, target, &proposed).await?;
        let met: Vec<Vec<Value>> = existing.iter().flatten().map(|r| def.key_of(r)).collect();
        if !session
            .lock_rows(def, met.iter().map(Vec::as_slice), seen)
            .await?
        {
            break existing;
        }
    };
    // Rows come back in the order of the proposed rows they stand for.
    let mut position = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<(usize, Row)> = Vec::new();
    let mut taken: Vec<(Row, Row)> = Vec::new();
    for (i, (row, old)) in proposed.into_iter().zip(existing).enumerate() {
        let ids = identities(def, target, &row);
        let first = !ids.iter().any(|id| seen.contains(id));
        seen.extend(ids);
        match (action, old) {
            (OnConflictAction::DoNothing, None) if first => out.push((i, row)),
            (OnConflictAction::DoNothing, _) => {}
            (OnConflictAction::DoUpdate(_), _) if !first => {
                return Err(Error::CardinalityViolation(
                    "ON CONFLICT DO UPDATE command cannot affect row a second time".into(),
                ));
            }
            (OnConflictAction::DoUpdate(_), None) => out.push((i, row)),
            (OnConflictAction::DoUpdate(_), Some(old)) => {
                position.insert(keys::encode(&def.key_of(&old)), i);
                taken.push((old, row));
            }
        }
    }
    if let Target::Unique(_) = target {
        // Inserted rows must not take a key that is taken (the key is not the target).
        let keys_: Vec<Vec<Value>> = out.iter().map(|(_, r)| def.key_of(r)).collect();
        let stored = session.get_rows(def, &keys_).await?;
        let mut fresh = std::collections::HashSet::new();
        for (k, s) in keys_.iter().zip(stored) {
            if s.is_some() || !fresh.insert(keys::encode(k)) {
                return Err(def.duplicate_key(k));
            }
        }
    }
    if let (OnConflictAction::DoUpdate(update), false) = (action, taken.is_empty()) {
        // An existing row and its proposed one agree on the target's columns.
        let on = match target {
            Target::Unique(i) => def.unique[i].columns.clone(),
            _ => def.primary_key.clone(),
        };
        for row in conflict_updates(session, def, alias, update, &on, taken).await? {
            let i = position
                .get(&keys::encode(&def.key_of(&row)))
                .copied()
                .unwrap_or(usize::MAX);
            out.push((i, row));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// DO UPDATE over the rows that met a conflict: `SET` and `WHERE` evaluated over each
/// existing row joined to its proposed row as `excluded` on the conflict target's
/// columns (`on`); the rows the WHERE keeps, updated.
async fn conflict_updates(
    session: &Session,
    def: &TableDef,
    alias: Option<&str>,
    update: &DoUpdate,
    on: &[usize],
    pairs: Vec<(Row, Row)>,
) -> Result<Vec<Row>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::LogicalPlan;
    let target = alias.map_or_else(|| quote_ident(def.relname()), quote_ident);
    let mut sets = Vec::new();
    // Where a SET takes a proposed column as it is, that column.
    let mut sources = Vec::new();
    let mut select = format!("SELECT {}", every_column(def, &target));
    for (i, a) in update.assignments.iter().enumerate() {
        let column = ident_name(
            &match &a.target {
                datafusion::sql::sqlparser::ast::AssignmentTarget::ColumnName(n) => {
                    n.0.last().and_then(|p| p.as_ident()).cloned()
                }
                _ => None,
            }
            .ok_or_else(|| {
                Error::FeatureNotSupported(
                    "ON CONFLICT DO UPDATE of a tuple is not supported".into(),
                )
            })?,
        );
        let c = def
            .column_index(&column)
            .ok_or_else(|| Error::UndefinedColumn(column.clone()))?;
        if def.primary_key.contains(&c) {
            return Err(Error::FeatureNotSupported(format!(
                "ON CONFLICT DO UPDATE SET of the primary key column \"{column}\" is not supported"
            )));
        }
        sets.push(c);
        sources.push(match &a.value {
            SqlExpr::CompoundIdentifier(parts)
                if parts.len() == 2 && ident_name(&parts[0]) == "excluded" =>
            {
                def.column_index(&ident_name(&parts[1]))
            }
            _ => None,
        });
        select.push_str(&format!(", ({}) AS \"__vg_set_{i}\"", a.value));
    }
    // `SET a = EXCLUDED.a, ...` without WHERE (what ORMs and LangGraph's store send):
    // the proposed values over the existing rows, without planning a join.
    if update.selection.is_none()
        && let Some(sources) = sources.iter().copied().collect::<Option<Vec<usize>>>()
    {
        let mut out = Vec::with_capacity(pairs.len());
        for (old, new) in pairs {
            let mut row = old;
            for (&c, &from) in sets.iter().zip(&sources) {
                row[c] = coerce_into(def, c, new[from].clone())?;
            }
            check_not_null(def, &row)?;
            out.push(row);
        }
        return Ok(out);
    }
    select.push_str(&format!(
        ", {} AS \"__vg_where\" FROM {} AS {target} JOIN {} AS excluded ON {}",
        update
            .selection
            .as_ref()
            .map_or("TRUE".into(), |w| w.to_string()),
        def.sql_name(),
        def.sql_name(),
        on.iter()
            .map(|&c| {
                let col = quote_ident(&def.columns[c].name);
                format!("{target}.{col} = excluded.{col}")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    ));
    let stmt = session
        .engine
        .parse(&select)?
        .pop()
        .ok_or_else(|| Error::internal("empty upsert"))?;
    let plan = session.plan(stmt).await?;
    // The scan under the alias `excluded` reads the proposed rows, the other the
    // existing ones.
    let old: Vec<&Row> = pairs.iter().map(|(o, _)| o).collect();
    let new: Vec<&Row> = pairs.iter().map(|(_, n)| n).collect();
    let plan = plan
        .transform_down(|node| match node {
            LogicalPlan::SubqueryAlias(mut sa) => {
                let rows = if sa.alias.table() == "excluded" {
                    &new
                } else {
                    &old
                };
                sa.input = Arc::new(reading_rows(
                    Arc::unwrap_or_clone(sa.input.clone()),
                    def,
                    rows,
                )?);
                Ok(Transformed::new(
                    LogicalPlan::SubqueryAlias(sa),
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                ))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    let df = session.ctx.execute_logical_plan(plan).await?;
    let batches: Vec<RecordBatch> = df.execute_stream().await?.try_collect().await?;
    let ncols = def.columns.len();
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let mut vals = b
                .columns()
                .iter()
                .map(|c| value_from_array(c, r))
                .collect::<Result<Vec<_>>>()?;
            let keep = vals.pop();
            if !matches!(keep, Some(Value::Bool(true))) {
                continue;
            }
            let set_vals = vals.split_off(ncols);
            let mut row = vals
                .into_iter()
                .zip(&def.columns)
                .map(|(v, c)| coerce(v, &c.ty))
                .collect::<Result<Row>>()?;
            for (v, &c) in set_vals.into_iter().zip(&sets) {
                row[c] = coerce_into(def, c, v)?;
            }
            check_not_null(def, &row)?;
            out.push(row);
        }
    }
    Ok(out)
}

/// The `SELECT` that evaluates `RETURNING items` over the rows in `from`, a table of
/// the written table's columns, named as the statement names the table.
pub(crate) fn returning_sql(
    def: &TableDef,
    alias: Option<&str>,
    items: &[datafusion::sql::sqlparser::ast::SelectItem],
    from: &str,
) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    let name = alias.map_or_else(|| quote_ident(def.relname()), quote_ident);
    format!("SELECT {} FROM {from} AS {name}", items.join(", "))
}

/// The written table, its alias and the RETURNING items of a write that has them.
pub(crate) fn returning_of<'a>(
    session: &Session,
    stmt: &'a Statement,
) -> Option<(
    Arc<TableDef>,
    Option<String>,
    &'a [datafusion::sql::sqlparser::ast::SelectItem],
)> {
    let (name, alias, items) = match stmt {
        Statement::Insert(ins) => match &ins.table {
            TableObject::TableName(n) => (
                n,
                ins.table_alias.as_ref().map(|a| a.alias.value.clone()),
                ins.returning.as_deref()?,
            ),
            _ => return None,
        },
        Statement::Update(up) => match &up.table.relation {
            TableFactor::Table { name, alias, .. } => (
                name,
                alias.as_ref().map(|a| a.name.value.clone()),
                up.returning.as_deref()?,
            ),
            _ => return None,
        },
        Statement::Delete(del) => {
            let (FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t)) = &del.from;
            match &t.first()?.relation {
                TableFactor::Table { name, alias, .. } => (
                    name,
                    alias.as_ref().map(|a| a.name.value.clone()),
                    del.returning.as_deref()?,
                ),
                _ => return None,
            }
        }
        _ => return None,
    };
    let def = session.engine.core.table(&table_name(name).ok()?).ok()?;
    Some((def, alias, items))
}

/// `RETURNING items` over the rows a statement wrote, as that statement's output
/// ([`over_rows`]).
async fn returning(
    session: &Session,
    def: &TableDef,
    alias: Option<&str>,
    items: &[datafusion::sql::sqlparser::ast::SelectItem],
    rows: &[Row],
) -> Result<Output> {
    let sql = returning_sql(def, alias, items, &def.sql_name());
    let (schema, batch) = over_rows(session, def, &sql, rows).await?;
    Ok(Output::Written {
        tag: "",
        schema,
        batch,
    })
}

/// A query that reads `def`'s table, run over `rows` in its place: planned over the
/// table itself, then its scan of the table replaced by a scan of `rows`.
pub(super) async fn over_rows(
    session: &Session,
    def: &TableDef,
    sql: &str,
    rows: &[Row],
) -> Result<(datafusion::arrow::datatypes::SchemaRef, RecordBatch)> {
    let stmt = session
        .engine
        .parse(sql)?
        .pop()
        .ok_or_else(|| Error::internal("an empty query over rows"))?;
    let plan = session.plan(stmt).await?;
    let plan = reading_rows(plan, def, &rows.iter().collect::<Vec<_>>())?;
    let schema = super::catalog::result_schema(&plan);
    let df = session.ctx.execute_logical_plan(plan).await?;
    let batches: Vec<RecordBatch> = df.execute_stream().await?.try_collect().await?;
    let batch =
        datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(Error::internal)?;
    Ok((schema, batch))
}

/// The write path of a statement: into the open transaction block, or else the engine's
/// write protocol at once, its notices to the session.
pub(crate) async fn write_rows(
    session: &Session,
    def: &Arc<TableDef>,
    rows: Vec<Row>,
    mode: WriteMode,
) -> Result<()> {
    let stored = store_rows(session, def, rows, mode).await?;
    index_stored(session, def, stored).await
}

/// The vector index's part of a write that [`store_rows`] left, if any.
pub(crate) async fn index_stored(
    session: &Session,
    def: &TableDef,
    stored: Option<Stored>,
) -> Result<()> {
    match stored {
        Some(stored) => {
            stored
                .index(&session.engine.core, def, &session.notices)
                .await
        }
        None => Ok(()),
    }
}

/// [`write_rows`] up to the vector index: what is left for it, when there is a part of
/// the write that can follow later (a plain write outside a block; a write with UNIQUE
/// claims or into a block is done whole).
pub(crate) async fn store_rows(
    session: &Session,
    def: &Arc<TableDef>,
    rows: Vec<Row>,
    mode: WriteMode,
) -> Result<Option<Stored>> {
    super::constraints::check_written(session, def, &rows).await?;
    let referenced = session.engine.core.is_referenced(&def.name);
    if def.unique.is_empty() && !referenced {
        return store_plain(session, def, rows, mode).await;
    }
    // The rows replaced, for the values they give up.
    let olds: Vec<Option<Row>> = match mode {
        WriteMode::InsertNew => vec![None; rows.len()],
        WriteMode::Upsert => {
            let keys_: Vec<Vec<Value>> = rows.iter().map(|r| def.key_of(r)).collect();
            session.get_rows(def, &keys_).await?
        }
    };
    if referenced {
        super::constraints::check_updated(session, def, &olds, &rows).await?;
    }
    if def.unique.is_empty() {
        return store_plain(session, def, rows, mode).await;
    }
    write_unique(session, def, rows, olds, mode).await?;
    Ok(None)
}

/// [`store_rows`] without the UNIQUE constraints' claims.
async fn store_plain(
    session: &Session,
    def: &Arc<TableDef>,
    rows: Vec<Row>,
    mode: WriteMode,
) -> Result<Option<Stored>> {
    let core = &session.engine.core;
    if session.tx.active() {
        session.tx.write(core, def, rows, mode).await?;
        return Ok(None);
    }
    Ok(Some(
        crate::engine::write::store_rows(core, def, rows, mode).await?,
    ))
}

/// [`write_rows`] without the UNIQUE constraints' claims.
async fn write_plain(
    session: &Session,
    def: &Arc<TableDef>,
    rows: Vec<Row>,
    mode: WriteMode,
) -> Result<()> {
    let stored = store_plain(session, def, rows, mode).await?;
    index_stored(session, def, stored).await
}

/// A write to a table with UNIQUE constraints: the values its rows bring are claimed
/// first (23505 if another row holds one), the values they no longer have (`olds`: the
/// rows they replace) are given back once the write stands (in a block: at its COMMIT).
async fn write_unique(
    session: &Session,
    def: &Arc<TableDef>,
    rows: Vec<Row>,
    olds: Vec<Option<Row>>,
    mode: WriteMode,
) -> Result<()> {
    use crate::engine::unique;
    let core = &session.engine.core;
    let pending = session.pending(&def.name);
    let pairs: Vec<(&Row, Option<&Row>)> =
        rows.iter().zip(olds.iter().map(Option::as_ref)).collect();
    let taken = unique::claim(core, def, pending.as_deref(), &pairs).await?;
    let given_up: Vec<unique::Claim> = olds
        .iter()
        .zip(&rows)
        .filter_map(|(o, n)| o.as_ref().map(|o| unique::given_up(def, o, Some(n))))
        .flatten()
        .collect();
    if let Err(e) = write_plain(session, def, rows, mode).await {
        unique::give_back(core, &taken).await;
        return Err(e);
    }
    if session.tx.active() {
        session.tx.note_unique(taken, given_up);
    } else {
        unique::give_back(core, &given_up).await;
    }
    Ok(())
}

/// The catalog option naming a table's bigserial column.
const SERIAL_OPTION: &str = "_vg_serial";

/// A generated 64-bit key, unique across proxies with high probability and increasing
/// within one: milliseconds since 2020 (41 bits), a random proxy id (10 bits), and a
/// sequence within the millisecond (12 bits).
fn next_serial() -> i64 {
    use std::sync::OnceLock;
    static NODE: OnceLock<i64> = OnceLock::new();
    static STATE: parking_lot::Mutex<(i64, i64)> = parking_lot::Mutex::new((0, 0));
    let node = *NODE.get_or_init(|| (uuid::Uuid::new_v4().as_u128() & 0x3ff) as i64);
    let mut st = STATE.lock();
    loop {
        let ms = now_micros() / 1000 - 1_577_836_800_000;
        if ms > st.0 {
            *st = (ms, 0);
        } else if st.1 < 0xfff {
            st.1 += 1;
        } else {
            std::thread::yield_now();
            continue;
        }
        return (st.0.max(ms) << 22) | (node << 12) | st.1;
    }
}

pub(super) async fn delete_rows(
    session: &Session,
    def: &Arc<TableDef>,
    keys_: Vec<Vec<Value>>,
    why: Removal<'_>,
) -> Result<u64> {
    let core = &session.engine.core;
    let referenced = core.is_referenced(&def.name) && !matches!(why, Removal::Truncate);
    if referenced && !session.tx.active() {
        // What a referencing row's ON DELETE does, and the delete, stand or fall together.
        return in_block(session, Box::pin(delete_rows(session, def, keys_, why))).await;
    }
    let olds: Vec<Row> = if def.unique.is_empty() && !referenced {
        vec![]
    } else {
        session
            .get_rows(def, &keys_)
            .await?
            .into_iter()
            .flatten()
            .collect()
    };
    let mut follow = if referenced {
        super::constraints::before_removal(session, def, &olds, why).await?
    } else {
        vec![]
    };
    follow.sort_by_key(FollowUp::order);
    // The unique values of the deleted rows go back once the delete stands.
    let given_up: Vec<crate::engine::unique::Claim> = olds
        .iter()
        .flat_map(|o| crate::engine::unique::given_up(def, o, None))
        .collect();
    let n = if session.tx.active() {
        let n = session.tx.delete(core, def, keys_).await?;
        session.tx.note_unique(vec![], given_up);
        n
    } else {
        let n = crate::engine::write::delete_rows(core, def, keys_, &session.notices).await?;
        crate::engine::unique::give_back(core, &given_up).await;
        n
    };
    for f in follow {
        match f {
            FollowUp::Delete(child, keys_) => {
                Box::pin(delete_rows(session, &child, keys_, Removal::Delete)).await?;
            }
            FollowUp::Write(child, rows) => {
                for r in &rows {
                    check_not_null(&child, r)?;
                }
                Box::pin(write_rows(session, &child, rows, WriteMode::Upsert)).await?;
            }
            FollowUp::Verify { child, fk, gone } => {
                super::constraints::verify(session, def, &child, &fk, &gone).await?;
            }
        }
    }
    Ok(n)
}

/// Run `work` as one transaction block (the session has none open): committed if it
/// succeeds, rolled back if not.
async fn in_block<T>(
    session: &Session,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let core = &session.engine.core;
    session.tx.begin(false);
    let done = work.await;
    let Some(tx) = session.tx.take() else {
        return done;
    };
    match done {
        Ok(v) => {
            crate::engine::write::commit_block(core, tx, &session.notices).await?;
            Ok(v)
        }
        Err(e) => {
            tx.abandon(core).await;
            Err(e)
        }
    }
}

/// Every column of `def`, the hidden key too (which `target.*` leaves out), qualified by
/// `target`: the select list of the queries that read whole rows to write them.
fn every_column(def: &TableDef, target: &str) -> String {
    def.columns
        .iter()
        .map(|c| format!("{target}.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `COMMENT ON ...` (pg_dump writes one for each commented object): vectorgate keeps
/// no comments, so it is accepted with a NOTICE once its table (for a table or a
/// column) is found; 42P01 otherwise, as Postgres.
fn comment(
    session: &Session,
    object_type: &datafusion::sql::sqlparser::ast::CommentObject,
    object_name: &ObjectName,
    if_exists: bool,
) -> Result<Output> {
    use datafusion::sql::sqlparser::ast::CommentObject;
    let table = match object_type {
        CommentObject::Table => Some(object_name.clone()),
        CommentObject::Column => Some(ObjectName(
            object_name.0[..object_name.0.len().saturating_sub(1)].to_vec(),
        )),
        _ => None,
    };
    if let Some(t) = table
        && !if_exists
    {
        session.engine.core.table(&table_name(&t)?)?;
    }
    session.notices.push(format!(
        "vectorgate keeps no comments: the comment on {object_type} {object_name} is not kept"
    ));
    Ok(Output::Command("COMMENT".into()))
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn update(session: &Session, up: &Update) -> Result<Output> {
    if !up.table.joins.is_empty() {
        return Err(Error::FeatureNotSupported(
            "UPDATE of a join is not supported (UPDATE ... FROM is)".into(),
        ));
    }
    let from = match &up.from {
        None => None,
        Some(datafusion::sql::sqlparser::ast::UpdateTableFromKind::AfterSet(t)) => Some(t),
        Some(_) => {
            return Err(Error::Syntax(
                "FROM comes after SET in UPDATE ... SET ... FROM".into(),
            ));
        }
    };
    let TableFactor::Table { name, alias, .. } = &up.table.relation else {
        return Err(Error::FeatureNotSupported(
            "UPDATE of this target is not supported".into(),
        ));
    };
    let def = session.engine.core.table(&table_name(name)?)?;
    let target = alias
        .as_ref()
        .map_or_else(|| quote_ident(def.relname()), |a| a.name.to_string());
    let mut sets = Vec::new();
    // With FROM the other tables' columns join the row: only the target's are kept.
    let mut select = format!("SELECT {}", every_column(&def, &target));
    for (i, a) in up.assignments.iter().enumerate() {
        let target = a.target.to_string();
        let cname = target
            .rsplit('.')
            .next()
            .unwrap_or(&target)
            .trim_matches('"')
            .to_string();
        let cname = if target.contains('"') {
            cname
        } else {
            cname.to_ascii_lowercase()
        };
        let col = def
            .column_index(&cname)
            .ok_or_else(|| Error::UndefinedColumn(cname.clone()))?;
        sets.push(col);
        select.push_str(&format!(", ({}) AS \"__vg_set_{i}\"", a.value));
    }
    refuse_always_identity(&def, &sets, true)?;
    // The alias's name only (its Display repeats the `AS` an `UPDATE t AS x` had), or
    // the table's own, which a schema-qualified name needs for `items.*`.
    select.push_str(&format!(" FROM {} AS {target}", def.sql_name()));
    for t in from.into_iter().flatten() {
        select.push_str(&format!(", {t}"));
    }
    if let Some(sel) = &up.selection {
        select.push_str(&format!(" WHERE {sel}"));
    }
    let (values, _) = locked_values(session, &def, &select, |r| key_of_read(&def, r)).await?;
    let ncols = def.columns.len();
    let mut new_rows = Vec::with_capacity(values.len());
    let mut moved: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    // A row the FROM joins more than once is updated once, with the first join row (which
    // one Postgres takes is unspecified).
    let mut updated = std::collections::HashSet::new();
    for mut vals in values {
        if from.is_some() && !updated.insert(keys::encode(&def.key_of(&vals))) {
            continue;
        }
        let set_vals = vals.split_off(ncols);
        // As read back from a plan (a uuid column comes as text): as the store keeps it.
        let old: Row = vals
            .into_iter()
            .zip(&def.columns)
            .map(|(v, c)| coerce(v, &c.ty))
            .collect::<Result<_>>()?;
        let mut row = old.clone();
        for (v, &c) in set_vals.into_iter().zip(&sets) {
            row[c] = coerce_into(&def, c, v)?;
        }
        check_not_null(&def, &row)?;
        let (ok, nk) = (def.key_of(&old), def.key_of(&row));
        if ok != nk {
            moved.push((ok, nk));
        }
        new_rows.push(row);
    }
    let n = new_rows.len();
    let alias = alias.as_ref().map(|a| a.name.value.clone());
    if let Some(items) = &up.returning {
        returning(session, &def, alias.as_deref(), items, &[]).await?;
    }
    if !moved.is_empty() {
        // A changed key is a delete of the old row and an insert of the new one; the new
        // key may only be taken by a row this statement moves away.
        let new_keys: Vec<Vec<Value>> = moved.iter().map(|(_, nk)| nk.clone()).collect();
        let existing = session.get_rows(&def, &new_keys).await?;
        let mut seen = std::collections::HashSet::new();
        for (nk, e) in new_keys.iter().zip(existing) {
            let taken = e.is_some() && !moved.iter().any(|(ok, _)| ok == nk);
            if taken || !seen.insert(keys::encode(nk)) {
                return Err(def.duplicate_key(nk));
            }
        }
        let old_keys: Vec<Vec<Value>> = moved.into_iter().map(|(ok, _)| ok).collect();
        delete_rows(session, &def, old_keys, Removal::Move(&new_rows)).await?;
    }
    let Some(items) = &up.returning else {
        write_rows(session, &def, new_rows, WriteMode::Upsert).await?;
        return Ok(Output::Command(format!("UPDATE {n}")));
    };
    write_rows(session, &def, new_rows.clone(), WriteMode::Upsert).await?;
    tagged(
        returning(session, &def, alias.as_deref(), items, &new_rows).await?,
        "UPDATE",
    )
}

/// What a query of the rows an UPDATE or DELETE changes finds, with those rows locked
/// (see [`crate::engine::row_locks`]): when a row it found was changed by another
/// session before the lock was had (the other session held it, and this one waited),
/// the query runs again, and so sees the rows as that session left them (whether they
/// still qualify, and their new values), as Postgres re-checks a row it waited for.
/// `key` gives a found row's key, in the key's types; the rows come with their keys.
async fn locked_values(
    session: &Session,
    def: &TableDef,
    select: &str,
    key: impl Fn(&[Value]) -> Result<Vec<Value>>,
) -> Result<(Vec<Vec<Value>>, Vec<Vec<Value>>)> {
    loop {
        let seen = session.rows_seen();
        let (found, _) = collect_values(session, select).await?;
        let keys_: Vec<Vec<Value>> = found.iter().map(|r| key(r)).collect::<Result<_>>()?;
        if !session
            .lock_rows(def, keys_.iter().map(Vec::as_slice), seen)
            .await?
        {
            return Ok((found, keys_));
        }
    }
}

/// The key of a row read back whole (every column, in order) from a plan.
fn key_of_read(def: &TableDef, r: &[Value]) -> Result<Vec<Value>> {
    def.primary_key
        .iter()
        .map(|&i| coerce(r[i].clone(), &def.columns[i].ty))
        .collect()
}

/// A RETURNING output under its statement's tag.
fn tagged(out: Output, tag: &'static str) -> Result<Output> {
    match out {
        Output::Written { schema, batch, .. } => Ok(Output::Written { tag, schema, batch }),
        _ => Err(Error::internal("RETURNING gave no rows")),
    }
}

async fn delete(session: &Session, del: &Delete) -> Result<Output> {
    if !del.tables.is_empty() {
        return Err(Error::FeatureNotSupported(
            "DELETE from several tables is not supported (DELETE ... USING is)".into(),
        ));
    }
    let from = match &del.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [twj] = from.as_slice() else {
        return Err(Error::FeatureNotSupported(
            "DELETE from several tables is not supported".into(),
        ));
    };
    let TableFactor::Table { name, alias, .. } = &twj.relation else {
        return Err(Error::FeatureNotSupported(
            "DELETE of this target is not supported".into(),
        ));
    };
    let def = session.engine.core.table(&table_name(name)?)?;
    let alias_name = alias.as_ref().map(|a| a.name.value.clone());
    let using = del.using.as_deref().unwrap_or_default();
    if let Some(items) = &del.returning {
        return delete_returning(
            session,
            &def,
            alias_name.as_deref(),
            using,
            &del.selection,
            items,
        )
        .await;
    }
    let target = alias
        .as_ref()
        .map_or_else(|| quote_ident(def.relname()), |a| a.name.to_string());
    let cols: Vec<String> = def
        .primary_key
        .iter()
        .map(|&i| format!("{target}.{}", quote_ident(&def.columns[i].name)))
        .collect();
    // DISTINCT: a row USING joins more than once is deleted once.
    // The alias's name only (its Display repeats the `AS` a `DELETE FROM t AS x` had),
    // or the table's own, which a schema-qualified name needs.
    let mut select = format!(
        "SELECT DISTINCT {} FROM {} AS {target}",
        cols.join(", "),
        def.sql_name()
    );
    for t in using {
        select.push_str(&format!(", {t}"));
    }
    if let Some(sel) = &del.selection {
        select.push_str(&format!(" WHERE {sel}"));
    }
    let (_, keys_) =
        locked_values(session, &def, &select, |k| key_in_types(&def, k.to_vec())).await?;
    let n = delete_rows(session, &def, keys_, Removal::Delete).await?;
    Ok(Output::Command(format!("DELETE {n}")))
}

/// The keys a query of `def`'s key columns (in key order) finds, in the key's types.
pub(super) async fn selected_keys(
    session: &Session,
    def: &TableDef,
    sql: &str,
) -> Result<Vec<Vec<Value>>> {
    let (found, _) = collect_values(session, sql).await?;
    found.into_iter().map(|k| key_in_types(def, k)).collect()
}

/// A key read back from a plan (its columns in key order), in the key's types.
pub(super) fn key_in_types(def: &TableDef, k: Vec<Value>) -> Result<Vec<Value>> {
    k.into_iter()
        .zip(&def.primary_key)
        .map(|(v, &c)| coerce(v, &def.columns[c].ty))
        .collect()
}

/// `DELETE ... RETURNING`: the whole rows are read first, deleted by key, and returned
/// (those that were there to delete).
async fn delete_returning(
    session: &Session,
    def: &Arc<TableDef>,
    alias: Option<&str>,
    using: &[datafusion::sql::sqlparser::ast::TableWithJoins],
    selection: &Option<SqlExpr>,
    items: &[datafusion::sql::sqlparser::ast::SelectItem],
) -> Result<Output> {
    returning(session, def, alias, items, &[]).await?;
    let target = alias.map_or_else(|| quote_ident(def.relname()), quote_ident);
    let mut select = format!(
        "SELECT {} FROM {} AS {target}",
        every_column(def, &target),
        def.sql_name()
    );
    for t in using {
        select.push_str(&format!(", {t}"));
    }
    if let Some(sel) = selection {
        select.push_str(&format!(" WHERE {sel}"));
    }
    let (found, _) = locked_values(session, def, &select, |r| key_of_read(def, r)).await?;
    // A row USING joins more than once is deleted (and returned) once.
    let mut seen = std::collections::HashSet::new();
    let found: Vec<Vec<Value>> = found
        .into_iter()
        .filter(|r| seen.insert(keys::encode(&def.key_of(r))))
        .collect();
    let rows: Vec<Row> = found
        .into_iter()
        .map(|r| {
            r.into_iter()
                .zip(&def.columns)
                .map(|(v, c)| coerce(v, &c.ty))
                .collect::<Result<Row>>()
        })
        .collect::<Result<_>>()?;
    let keys_: Vec<Vec<Value>> = rows.iter().map(|r| def.key_of(r)).collect();
    delete_rows(session, def, keys_, Removal::Delete).await?;
    tagged(
        returning(session, def, alias, items, &rows).await?,
        "DELETE",
    )
}

/// A duration setting as Postgres reads it: milliseconds, or a number with a unit
/// (`ms`, `s`, `min`, `h`).
pub(crate) fn parse_duration_ms(value: &str) -> Result<u64> {
    let t = value.trim().trim_matches('\'').to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        Error::InvalidParameter(format!("invalid value for a duration: \"{value}\""))
    })?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(Error::InvalidParameter(format!(
                "invalid value for a duration: \"{value}\" (units: ms, s, min, h)"
            )));
        }
    };
    Ok(n.saturating_mul(factor))
}

/// Settings the proxy itself reads, with their checks.
fn check_setting(name: &str, value: &str) -> Result<()> {
    match name {
        "transaction_isolation" | "default_transaction_isolation" => {
            let level = value.trim_matches('\'').to_ascii_lowercase();
            if !matches!(
                level.as_str(),
                "read committed" | "read uncommitted" | "default"
            ) {
                return Err(isolation_refused(&level));
            }
        }
        "vectorgate.hnsw_ef" => {
            let ok = value
                .parse::<usize>()
                .is_ok_and(|v| (1..=100_000).contains(&v));
            if !ok {
                return Err(Error::InvalidParameter(format!(
                    "invalid value for parameter \"{name}\": \"{value}\" (an integer from 1 to 100000)"
                )));
            }
        }
        "statement_timeout" => {
            parse_duration_ms(value)?;
        }
        "vectorgate.oversampling" => {
            let ok = value
                .parse::<f64>()
                .is_ok_and(|v| (1.0..=100.0).contains(&v));
            if !ok {
                return Err(Error::InvalidParameter(format!(
                    "invalid value for parameter \"{name}\": \"{value}\" (a number from 1 to 100)"
                )));
            }
        }
        "vectorgate.exact" | "vectorgate.row_scan" | "vectorgate.rescore" | "vectorgate.direct"
            if !matches!(value, "on" | "off" | "true" | "false" | "1" | "0") =>
        {
            return Err(Error::InvalidParameter(format!(
                "parameter \"{name}\" requires a Boolean value"
            )));
        }
        "vectorgate.exact" | "vectorgate.row_scan" | "vectorgate.rescore" | "vectorgate.direct" => {
        }
        n if n.starts_with("vectorgate.fault_")
            && crate::faults::enabled()
            && crate::faults::set(n, matches!(value, "on" | "true" | "1")) => {}
        n if n.starts_with("vectorgate.") => {
            return Err(Error::UndefinedObject(format!(
                "unrecognized configuration parameter \"{n}\""
            )));
        }
        _ => {}
    }
    Ok(())
}

/// The access mode a transaction's `modes` name (`None`: not named; `read_only` is the
/// transaction's mode so far). An isolation level stronger than READ COMMITTED is
/// refused, since vectorgate cannot give it, except for a read-only transaction: there it
/// is taken with a NOTICE, as READ COMMITTED (each statement reads the rows committed when
/// it runs; no snapshot spans the block). That is what `pg_dump` asks for
/// (`REPEATABLE READ, READ ONLY`), and what it gets is the same dump while nobody writes.
fn transaction_modes(
    session: &Session,
    modes: &[TransactionMode],
    read_only: bool,
) -> Result<Option<bool>> {
    let mut access = None;
    let mut stronger = None;
    for m in modes {
        match m {
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => access = Some(true),
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => access = Some(false),
            TransactionMode::IsolationLevel(
                TransactionIsolationLevel::ReadCommitted
                | TransactionIsolationLevel::ReadUncommitted,
            ) => stronger = None,
            TransactionMode::IsolationLevel(level) => stronger = Some(level.to_string()),
        }
    }
    if let Some(level) = stronger {
        if !access.unwrap_or(read_only) {
            return Err(isolation_refused(&level));
        }
        session.notices.push(format!(
            "isolation level {} is taken as READ COMMITTED by vectorgate: it keeps no snapshots, so each statement of this read-only transaction reads the rows committed when it runs",
            level.to_ascii_uppercase()
        ));
    }
    Ok(access)
}

fn isolation_refused(level: &str) -> Error {
    Error::FeatureNotSupported(format!(
        "isolation level {} is not supported by vectorgate: transactions are READ COMMITTED (a READ ONLY transaction may name it, and reads as READ COMMITTED)",
        level.to_ascii_uppercase()
    ))
}

/// What a transaction block allows: DDL runs (and commits) at once, with a NOTICE that
/// a ROLLBACK will not undo it, but not on a table the block has uncommitted rows in.
fn inside_block(session: &Session, stmt: &Statement) -> Result<()> {
    let (verb, tables): (&str, Vec<String>) = match stmt {
        Statement::CreateTable(ct) => ("CREATE TABLE", vec![table_name(&ct.name)?]),
        Statement::AlterTable(at) => ("ALTER TABLE", vec![table_name(&at.name)?]),
        Statement::CreateIndex(ci) => ("CREATE INDEX", vec![table_name(&ci.table_name)?]),
        Statement::Drop { names, .. } => {
            ("DROP", names.iter().map(table_name).collect::<Result<_>>()?)
        }
        _ => return Ok(()),
    };
    if let Some(t) = tables.iter().find(|t| session.tx.touches(t)) {
        return Err(Error::Transaction {
            code: "55006",
            message: format!(
                "cannot run {verb} on \"{t}\" because this transaction block has uncommitted changes to it; commit them first"
            ),
        });
    }
    session.notices.push(format!(
        "{verb} takes effect at once inside a transaction block: vectorgate commits table changes on their own, and a ROLLBACK will not undo it"
    ));
    Ok(())
}

fn set_variable(session: &Session, s: &Set) -> Result<Output> {
    if let Set::SetTimeZone { value, .. } = s {
        return set_time_zone(session, &option_text(value));
    }
    if let Set::SetTransaction {
        modes,
        session: all,
        ..
    } = s
    {
        let now = if *all {
            session
                .get("default_transaction_read_only")
                .is_some_and(|v| matches!(v.as_str(), "on" | "true" | "1"))
        } else {
            session.tx.read_only()
        };
        let read_only = transaction_modes(session, modes, now)?;
        if *all {
            if let Some(read_only) = read_only {
                let value = if read_only { "on" } else { "off" };
                session.set("default_transaction_read_only", Some(value.into()));
            }
        } else if !session.tx.active() {
            session.notices.push_warning(
                "25P01",
                "SET TRANSACTION can only be used in transaction blocks",
            );
        } else if let Some(read_only) = read_only {
            session.tx.set_read_only(read_only);
        }
        return Ok(Output::Command("SET".into()));
    }
    if let Set::SingleAssignment {
        variable, values, ..
    } = s
    {
        let name = variable.to_string().to_ascii_lowercase();
        let value = values
            .iter()
            .map(option_text)
            .collect::<Vec<_>>()
            .join(", ");
        if name == super::constraints::SET_CONSTRAINTS {
            super::constraints::set_constraints(session, &value)?;
            return Ok(Output::Command("SET CONSTRAINTS".into()));
        }
        if name == "timezone" {
            return set_time_zone(session, &value);
        }
        let value = if ["on", "off", "true", "false"].contains(&value.to_ascii_lowercase().as_str())
        {
            value.to_ascii_lowercase()
        } else {
            value
        };
        check_setting(&name, &value)?;
        if value.eq_ignore_ascii_case("default") {
            session.set(&name, None);
        } else {
            session.set(&name, Some(value));
        }
    }
    Ok(Output::Command("SET".into()))
}

/// `SET TIME ZONE` / `SET timezone`: a zone Postgres would take is kept (SHOW answers
/// it), an unknown one is 22023 as in Postgres. vectorgate writes and converts
/// timestamps in UTC whatever the setting, and says so (a NOTICE) for a zone whose
/// offset is not always zero.
fn set_time_zone(session: &Session, value: &str) -> Result<Output> {
    let zone = value.trim();
    if zone.eq_ignore_ascii_case("default") || zone.eq_ignore_ascii_case("local") {
        session.set("timezone", None);
        return Ok(Output::Command("SET".into()));
    }
    let Some(found) = super::clock::time_zone(zone) else {
        return Err(Error::InvalidParameter(format!(
            "invalid value for parameter \"TimeZone\": \"{zone}\""
        )));
    };
    if !found.utc {
        session.notices.push(format!(
            "vectorgate keeps timestamps in UTC: with the time zone \"{zone}\", values of timestamp with time zone are still written with +00 (the same instants), and converted to timestamp, date and time in UTC"
        ));
    }
    session.set("timezone", Some(found.name));
    Ok(Output::Command("SET".into()))
}

/// Defaults reported by SHOW for settings clients commonly read.
pub(crate) fn default_setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => crate::server_version(),
        "server_version_num" => crate::server_version_num(),
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" => "on",
        "integer_datetimes" => "on",
        "datestyle" => "ISO, MDY",
        "timezone" => "UTC",
        "search_path" => "\"$user\", public",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" => "off",
        "max_identifier_length" => "63",
        "statement_timeout" => "0",
        "intervalstyle" => "postgres",
        "application_name" => "",
        "extra_float_digits" => "1",
        "lc_collate" | "lc_ctype" => "C",
        "jit" => "off",
        "max_index_keys" => "32",
        "default_transaction_read_only" => "off",
        "vectorgate.exact" | "vectorgate.row_scan" => "off",
        "vectorgate.direct" => "on",
        "vectorgate.hnsw_ef" | "vectorgate.oversampling" | "vectorgate.rescore" => "default",
        _ => return None,
    })
}

/// The setting a `SHOW` names: `SHOW a.b` arrives as the words `a`, `.`-joined.
pub fn show_name(variable: &[Ident]) -> String {
    let words: Vec<&str> = variable.iter().map(|i| i.value.as_str()).collect();
    let joined = if words.len() == 2 && words[0].eq_ignore_ascii_case("vectorgate") {
        words.join(".")
    } else {
        words.join(" ")
    };
    // `SHOW TRANSACTION ISOLATION LEVEL` is Postgres' spelling of this setting.
    match joined.to_ascii_lowercase().as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        other => other.to_string(),
    }
}

fn show(session: &Session, variable: &[Ident]) -> Result<Output> {
    let name = show_name(variable);
    let value = match session.get(&name) {
        Some(v) => v,
        None => default_setting(&name).map(str::to_string).ok_or_else(|| {
            Error::UndefinedObject(format!("unrecognized configuration parameter \"{name}\""))
        })?,
    };
    let schema = Arc::new(Schema::new(vec![Field::new(
        name.clone(),
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![value]))],
    )
    .map_err(Error::internal)?;
    Ok(Output::batch(schema, batch))
}

/// The columns of `SHOW vectorgate.sync_status`.
pub(crate) fn sync_status_schema() -> Arc<Schema> {
    use datafusion::arrow::datatypes::TimeUnit;
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("pending", DataType::Int64, false),
        Field::new("oldest_pending_seconds", DataType::Float64, true),
        Field::new(
            "last_reconcile",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("replayed", DataType::Int64, false),
        Field::new("index_breaker", DataType::Utf8, false),
    ]))
}

/// `SHOW vectorgate.sync_status`: one row per table: outbox entries pending, the age of
/// the oldest, when the reconciler last replayed the table, and the index's breaker.
async fn sync_status(session: &Session) -> Result<Output> {
    use datafusion::arrow::array::{Float64Array, Int64Array, TimestampMicrosecondArray};
    let shared = &session.engine.core;
    // Tables without a vector column have no index to keep in step.
    let mut defs: Vec<Arc<TableDef>> = shared
        .tables()
        .into_iter()
        .filter(|d| d.indexed())
        .collect();
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    let now = now_micros();
    let (mut names, mut pending, mut oldest, mut last, mut replayed) =
        (vec![], vec![], vec![], vec![], vec![]);
    for def in &defs {
        let entries = shared.rows.outbox_pending(def, i64::MAX, 1_000_000).await?;
        names.push(def.name.clone());
        pending.push(entries.len() as i64);
        oldest.push(
            entries
                .iter()
                .map(|e| e.ts)
                .min()
                .map(|ts| (now - ts).max(0) as f64 / 1e6),
        );
        let sync = shared
            .sync
            .lock()
            .get(&def.name)
            .cloned()
            .unwrap_or_default();
        last.push(sync.last_reconcile);
        replayed.push(sync.replayed as i64);
    }
    let state = shared.health.state_name();
    let schema = sync_status_schema();
    let n = names.len();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(pending)),
            Arc::new(Float64Array::from(oldest)),
            Arc::new(TimestampMicrosecondArray::from(last).with_timezone("UTC")),
            Arc::new(Int64Array::from(replayed)),
            Arc::new(StringArray::from(vec![state; n])),
        ],
    )
    .map_err(Error::internal)?;
    Ok(Output::batch(schema, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(check_setting("vectorgate.exact", "on").is_ok());
        assert!(matches!(
            check_setting("vectorgate.exact", "maybe"),
            Err(Error::InvalidParameter(_))
        ));
        assert!(check_setting("vectorgate.hnsw_ef", "128").is_ok());
        assert!(matches!(
            check_setting("vectorgate.hnsw_ef", "0"),
            Err(Error::InvalidParameter(_))
        ));
        assert!(matches!(
            check_setting("vectorgate.nope", "1"),
            Err(Error::UndefinedObject(_))
        ));
        assert!(check_setting("application_name", "anything").is_ok());
    }

    #[test]
    fn type_names() {
        assert_eq!(
            parse_type("vector(384)").ok(),
            Some(ColumnType::Vector(384))
        );
        assert_eq!(parse_type("VARCHAR(20)").ok(), Some(ColumnType::Text));
        assert_eq!(parse_type("text[]").ok(), Some(ColumnType::TextArray));
        assert_eq!(
            parse_type("double precision").ok(),
            Some(ColumnType::Double)
        );
        assert_eq!(
            parse_type("timestamp with time zone").ok(),
            Some(ColumnType::TimestampTz)
        );
        assert!(matches!(
            parse_type("geometry"),
            Err(Error::UndefinedObject(_))
        ));
        // pgvector's `vector` without a dimension.
        assert_eq!(parse_type("vector").ok(), Some(ColumnType::Vector(0)));
        assert_eq!(parse_type("halfvec(3)").ok(), Some(ColumnType::HalfVec(3)));
        assert_eq!(
            parse_type("sparsevec(30522)").ok(),
            Some(ColumnType::SparseVec(30522))
        );
        assert_eq!(parse_type("BIT(64)").ok(), Some(ColumnType::Bit(64)));
        assert_eq!(parse_type("bit").ok(), Some(ColumnType::Bit(1)));
        assert_eq!(
            parse_type("BIT VARYING(8)").ok(),
            Some(ColumnType::VarBit(8))
        );
        assert_eq!(parse_type("varbit").ok(), Some(ColumnType::VarBit(0)));
        assert_eq!(
            parse_type("public.halfvec").ok(),
            Some(ColumnType::HalfVec(0))
        );
        assert!(parse_type("halfvec(0)").is_err());
        assert!(matches!(
            parse_type("vector(0)"),
            Err(Error::InvalidParameter(_))
        ));
    }
}
