//! One error type for the whole proxy, and the one table that maps each variant to a
//! SQLSTATE. Messages are written for clients: they never carry internal addresses,
//! file paths or debug strings.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("{0}")]
    UndefinedFunction(String),
    #[error("{0}")]
    UndefinedObject(String),
    #[error("{0}")]
    InvalidText(String),
    #[error("{0}")]
    DataException(String),
    #[error("{0}")]
    NumericOutOfRange(String),
    /// A bit string of another length than its `bit(n)` type's.
    #[error("{0}")]
    StringDataLength(String),
    /// A value longer than its type takes.
    #[error("{0}")]
    StringTruncation(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidTableDefinition(String),
    #[error("{0}")]
    DatatypeMismatch(String),
    #[error("{0}")]
    FeatureNotSupported(String),
    #[error("{0}")]
    Syntax(String),
    #[error("{message}")]
    UniqueViolation {
        message: String,
        detail: String,
        /// The table and the constraint, for the error's fields.
        table: String,
        constraint: String,
    },
    #[error("{0}")]
    NotNullViolation(String),
    /// A row a FOREIGN KEY finds no referenced row for, or a referenced row still in use.
    #[error("{message}")]
    ForeignKeyViolation {
        message: String,
        detail: String,
        table: String,
        constraint: String,
    },
    /// A row a CHECK constraint's expression is false for.
    #[error("{message}")]
    CheckViolation {
        message: String,
        detail: String,
        table: String,
        constraint: String,
    },
    /// A FOREIGN KEY that cannot reference what it names (SQLSTATE 42830).
    #[error("{0}")]
    InvalidForeignKey(String),
    /// A constraint (or other object) whose name is taken (SQLSTATE 42710).
    #[error("{0}")]
    DuplicateObject(String),
    /// `schema "x" already exists` (SQLSTATE 42P06).
    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),
    /// `schema "x" does not exist` (SQLSTATE 3F000).
    #[error("schema \"{0}\" does not exist")]
    InvalidSchemaName(String),
    /// Any SQLSTATE with a DETAIL line.
    #[error("{message}")]
    Detailed {
        code: &'static str,
        message: String,
        detail: String,
    },
    /// An object others depend on, dropped without CASCADE (SQLSTATE 2BP01).
    #[error("{message}")]
    DependentObjects { message: String, detail: String },
    #[error("{0}")]
    ProtocolViolation(String),
    #[error("{0}")]
    QueryCanceled(String),
    /// A write from a read-only user or session (SQLSTATE 25006).
    #[error("{0}")]
    ReadOnly(String),
    /// A statement or result over a configured limit (SQLSTATE 54000).
    #[error("{0}")]
    ProgramLimit(String),
    /// A scalar subquery returned more than one row; an upsert met a row twice.
    #[error("{0}")]
    CardinalityViolation(String),
    /// An ON CONFLICT target that no unique constraint matches.
    #[error("{0}")]
    InvalidColumnReference(String),
    /// A column name that more than one table in scope has.
    #[error("column reference \"{0}\" is ambiguous")]
    AmbiguousColumn(String),
    /// A reference that could mean more than one column, worded in full (42702).
    #[error("{0}")]
    Ambiguous(String),
    /// An object of the wrong kind for the operation (a table without a vector column
    /// given to a search).
    #[error("{0}")]
    WrongObjectType(String),
    /// `currval` before `nextval` in a session, and the like.
    #[error("{0}")]
    ObjectNotInPrerequisiteState(String),
    /// An explicit value for a `GENERATED ALWAYS AS IDENTITY` column.
    #[error("{0}")]
    GeneratedAlways(String),
    /// A sequence that reached its bound without CYCLE.
    #[error("{0}")]
    SequenceLimit(String),
    /// A column added under a name the table already has.
    #[error("column \"{0}\" of relation \"{1}\" does not exist")]
    UndefinedColumnOf(String, String),
    #[error("column \"{0}\" of relation \"{1}\" already exists")]
    DuplicateColumn(String, String),
    /// A user column named as one of Postgres' system columns (`ctid`, `xmin`, ...).
    #[error("column name \"{0}\" conflicts with a system column name")]
    SystemColumn(String),
    /// A backend answered with an error. `store` names the backend ("row store",
    /// "vector index") for the hint; `message` is already client-safe.
    #[error("{store} error: {message}")]
    Backend {
        store: &'static str,
        message: String,
    },
    /// A backend did not answer in time.
    #[error("{store} timed out: {message}")]
    Timeout {
        store: &'static str,
        message: String,
    },
    /// A backend could not be reached.
    #[error("{store} is unavailable: {message}")]
    Unavailable {
        store: &'static str,
        message: String,
    },
    /// An error with the SQLSTATE `code` and what to do about it (Postgres' HINT).
    #[error("{message}")]
    Hinted {
        code: &'static str,
        message: String,
        hint: String,
    },
    /// Not enough resources to answer (SQLSTATE 53000), with what to do about it.
    #[error("{message}")]
    InsufficientResources { message: String, hint: String },
    /// A transaction block's state forbids the statement, or its commit could not be
    /// made: `code` is the SQLSTATE (25P01, 25P02, 3B001, 40001, 55006, 08007).
    #[error("{message}")]
    Transaction { code: &'static str, message: String },
    /// Anything else. The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
    /// An error with where it happened (the error's CONTEXT line: `COPY t, line 3`).
    #[error("{inner}")]
    Context { inner: Box<Error>, context: String },
}

impl Error {
    /// The SQLSTATE sent to the client for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::UndefinedTable(_) => "42P01",
            Error::DuplicateTable(_) => "42P07",
            Error::UndefinedColumn(_) => "42703",
            Error::UndefinedFunction(_) => "42883",
            Error::UndefinedObject(_) => "42704",
            Error::InvalidText(_) => "22P02",
            Error::DataException(_) => "22000",
            Error::NumericOutOfRange(_) => "22003",
            Error::StringDataLength(_) => "22026",
            Error::StringTruncation(_) => "22001",
            Error::DivisionByZero => "22012",
            Error::InvalidParameter(_) => "22023",
            Error::InvalidTableDefinition(_) => "42P16",
            Error::DatatypeMismatch(_) => "42804",
            Error::FeatureNotSupported(_) => "0A000",
            Error::Syntax(_) => "42601",
            Error::UniqueViolation { .. } => "23505",
            Error::NotNullViolation(_) => "23502",
            Error::ForeignKeyViolation { .. } => "23503",
            Error::CheckViolation { .. } => "23514",
            Error::DependentObjects { .. } => "2BP01",
            Error::InvalidForeignKey(_) => "42830",
            Error::DuplicateObject(_) => "42710",
            Error::DuplicateSchema(_) => "42P06",
            Error::InvalidSchemaName(_) => "3F000",
            Error::Detailed { code, .. } | Error::Hinted { code, .. } => code,
            Error::ProtocolViolation(_) => "08P01",
            Error::QueryCanceled(_) => "57014",
            Error::ReadOnly(_) => "25006",
            Error::ProgramLimit(_) => "54000",
            Error::CardinalityViolation(_) => "21000",
            Error::InvalidColumnReference(_) => "42P10",
            Error::AmbiguousColumn(_) | Error::Ambiguous(_) => "42702",
            Error::WrongObjectType(_) => "42809",
            Error::DuplicateColumn(..) | Error::SystemColumn(_) => "42701",
            Error::UndefinedColumnOf(..) => "42703",
            Error::SequenceLimit(_) => "2200H",
            Error::ObjectNotInPrerequisiteState(_) => "55000",
            Error::GeneratedAlways(_) => "428C9",
            Error::Backend { .. } => "58000",
            Error::Unavailable { .. } => "08006",
            Error::Timeout { .. } => "57014",
            Error::InsufficientResources { .. } => "53000",
            Error::Transaction { code, .. } => code,
            Error::Internal(_) => "XX000",
            Error::Context { inner, .. } => inner.sqlstate(),
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Error::UniqueViolation { detail, .. }
            | Error::ForeignKeyViolation { detail, .. }
            | Error::CheckViolation { detail, .. }
            | Error::DependentObjects { detail, .. }
            | Error::Detailed { detail, .. } => (!detail.is_empty()).then(|| detail.clone()),
            Error::Context { inner, .. } => inner.detail(),
            _ => None,
        }
    }

    /// The table and constraint a constraint violation names (the error's `t` and `n`
    /// fields, which drivers expose as the violated constraint).
    pub fn constraint(&self) -> Option<(&str, &str)> {
        match self {
            Error::UniqueViolation {
                table, constraint, ..
            }
            | Error::ForeignKeyViolation {
                table, constraint, ..
            }
            | Error::CheckViolation {
                table, constraint, ..
            } => Some((table, constraint)),
            Error::Context { inner, .. } => inner.constraint(),
            _ => None,
        }
    }

    /// Where the error happened, as Postgres' CONTEXT line says it.
    pub fn context(&self) -> Option<String> {
        match self {
            Error::Context { inner, context } => Some(match inner.context() {
                Some(deeper) => format!("{deeper}\n{context}"),
                None => context.clone(),
            }),
            _ => None,
        }
    }

    /// This error, with where it happened (see [`Error::context`]).
    pub fn within(self, context: String) -> Error {
        Error::Context {
            inner: Box::new(self),
            context,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::DependentObjects { .. } => {
                Some("Use DROP ... CASCADE to drop the dependent objects too.".into())
            }
            Error::Backend { store, .. }
            | Error::Unavailable { store, .. }
            | Error::Timeout { store, .. } => Some(format!(
                "the {store} behind vectorgate failed; the proxy keeps running, retry the statement"
            )),
            Error::InsufficientResources { hint, .. } | Error::Hinted { hint, .. } => {
                Some(hint.clone())
            }
            Error::Context { inner, .. } => inner.hint(),
            _ => None,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }

    pub fn row_store(e: impl std::fmt::Display) -> Self {
        Error::Backend {
            store: "row store",
            message: e.to_string(),
        }
    }

    pub fn vector_index(e: impl std::fmt::Display) -> Self {
        Error::Backend {
            store: "vector index",
            message: e.to_string(),
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        from_datafusion(e)
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

fn strip_prefixes(msg: &str) -> String {
    let mut m = msg.trim();
    for p in [
        "Error during planning: ",
        "Execution error: ",
        "Arrow error: ",
        "Invalid argument error: ",
        "Cast error: ",
        "This feature is not implemented: ",
        "SQL error: ",
        "Schema error: ",
        "Optimizer rule",
    ] {
        if let Some(rest) = m.strip_prefix(p) {
            m = rest.trim();
        }
    }
    m.to_string()
}

fn from_datafusion(e: DataFusionError) -> Error {
    use datafusion::common::SchemaError;
    match e {
        DataFusionError::External(inner) => from_boxed(inner),
        DataFusionError::Context(_, inner) => from_datafusion(*inner),
        DataFusionError::Diagnostic(_, inner) => from_datafusion(*inner),
        DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
            Ok(inner) => from_datafusion(inner),
            Err(arc) => find_mine(&arc).unwrap_or_else(|| Error::Internal(arc.to_string())),
        },
        DataFusionError::Collection(mut errs) if !errs.is_empty() => {
            from_datafusion(errs.remove(0))
        }
        DataFusionError::SchemaError(se, _) => match *se {
            SchemaError::FieldNotFound { field, .. } => {
                Error::UndefinedColumn(field.name().to_string())
            }
            SchemaError::AmbiguousReference { field } => {
                Error::AmbiguousColumn(field.name().to_string())
            }
            other => Error::Syntax(strip_prefixes(&other.to_string())),
        },
        DataFusionError::SQL(pe, _) => Error::Syntax(strip_prefixes(&pe.to_string())),
        DataFusionError::NotImplemented(m) => Error::FeatureNotSupported(strip_prefixes(&m)),
        DataFusionError::Plan(m) => plan_error(&m),
        DataFusionError::ArrowError(ae, _) if matches!(*ae, ArrowError::ExternalError(_)) => {
            match *ae {
                ArrowError::ExternalError(inner) => from_boxed(inner),
                other => Error::Internal(other.to_string()),
            }
        }
        DataFusionError::ArrowError(ae, _) => {
            let m = strip_prefixes(&ae.to_string());
            if m.contains("Cannot cast") || m.contains("Can't cast") || m.contains("parse") {
                Error::InvalidText(m)
            } else if m.contains("Divide by zero") {
                Error::DivisionByZero
            } else if m.contains("overflow") {
                Error::NumericOutOfRange(m)
            } else {
                Error::DataException(m)
            }
        }
        DataFusionError::Execution(m) => {
            let m = strip_prefixes(&m);
            if m.contains("Cannot cast") || m.contains("Can't cast") || m.contains("parse") {
                Error::InvalidText(m)
            } else {
                Error::DataException(m)
            }
        }
        other => Error::Internal(other.to_string()),
    }
}

/// One of our errors inside a shared (not owned) DataFusion error.
fn find_mine(e: &DataFusionError) -> Option<Error> {
    fn boxed(b: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Error> {
        if let Some(mine) = b.downcast_ref::<Error>() {
            return Some(mine.clone());
        }
        if let Some(df) = b.downcast_ref::<DataFusionError>() {
            return find_mine(df);
        }
        if let Some(ArrowError::ExternalError(inner)) = b.downcast_ref::<ArrowError>() {
            return boxed(inner.as_ref());
        }
        None
    }
    match e {
        DataFusionError::External(b) => boxed(b.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            find_mine(inner)
        }
        DataFusionError::Shared(inner) => find_mine(inner),
        DataFusionError::ArrowError(ae, _) => match ae.as_ref() {
            ArrowError::ExternalError(inner) => boxed(inner.as_ref()),
            _ => None,
        },
        _ => None,
    }
}

/// An error that crossed a `Box<dyn Error>` (DataFusion's or Arrow's "external" error).
fn from_boxed(inner: Box<dyn std::error::Error + Send + Sync>) -> Error {
    let inner = match inner.downcast::<Error>() {
        Ok(mine) => return *mine,
        Err(other) => other,
    };
    let inner = match inner.downcast::<DataFusionError>() {
        Ok(df) => return from_datafusion(*df),
        Err(other) => other,
    };
    match inner.downcast::<ArrowError>() {
        Ok(ae) => match *ae {
            ArrowError::ExternalError(inner) => from_boxed(inner),
            other => from_datafusion(DataFusionError::ArrowError(Box::new(other), None)),
        },
        Err(other) => Error::Internal(other.to_string()),
    }
}

fn plan_error(msg: &str) -> Error {
    let m = strip_prefixes(msg);
    // "table 'vectorgate.public.foo' not found"
    if let Some(rest) = m.strip_prefix("table '")
        && let Some(name) = rest.strip_suffix("' not found")
    {
        let short = name.rsplit('.').next().unwrap_or(name);
        return Error::UndefinedTable(short.to_string());
    }
    // "LIMIT must be >= 0, '-1' was provided", "OFFSET must be >=0, ...": Postgres'
    // own codes and words.
    for (prefix, code, what) in [
        ("LIMIT must be >", "2201W", "LIMIT"),
        ("OFFSET must be >", "2201X", "OFFSET"),
    ] {
        if m.starts_with(prefix) {
            return Error::Detailed {
                code,
                message: format!("{what} must not be negative"),
                detail: String::new(),
            };
        }
    }
    if m.contains("Invalid function") || m.contains("No function matches") {
        return Error::UndefinedFunction(m);
    }
    if m.contains("table function") && m.contains("not found") {
        return Error::UndefinedFunction(m);
    }
    if m.contains("Unsupported") || m.contains("not supported") {
        return Error::FeatureNotSupported(m);
    }
    if m.contains("Cannot infer common")
        || m.contains("Cannot coerce")
        || m.contains("type mismatch")
    {
        return Error::DatatypeMismatch(m);
    }
    Error::Syntax(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_sqlstate() {
        let mine = || Error::Unavailable {
            store: "row store",
            message: "down".into(),
        };
        let wrapped =
            DataFusionError::External(Box::new(ArrowError::ExternalError(Box::new(mine()))));
        assert_eq!(Error::from(wrapped).sqlstate(), "08006");
        let wrapped = DataFusionError::ArrowError(
            Box::new(ArrowError::ExternalError(Box::new(DataFusionError::from(
                mine(),
            )))),
            None,
        );
        assert_eq!(Error::from(wrapped).sqlstate(), "08006");
        let shared = std::sync::Arc::new(DataFusionError::from(mine()));
        let _keep = shared.clone();
        assert_eq!(
            Error::from(DataFusionError::Shared(shared)).sqlstate(),
            "08006"
        );
        let ctx = DataFusionError::Context("scan".into(), Box::new(DataFusionError::from(mine())));
        assert_eq!(Error::from(ctx).sqlstate(), "08006");
        assert_eq!(
            Error::from(DataFusionError::Plan(
                "table 'vectorgate.public.x' not found".into()
            ))
            .sqlstate(),
            "42P01"
        );
        for (msg, code) in [
            ("LIMIT must be >= 0, '-1' was provided", "2201W"),
            ("OFFSET must be >=0, '-3' was provided", "2201X"),
        ] {
            let e = Error::from(DataFusionError::Plan(msg.into()));
            assert_eq!(e.sqlstate(), code, "{msg}");
            assert!(e.to_string().ends_with("must not be negative"), "{e}");
        }
    }
}
