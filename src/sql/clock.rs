//! PostgreSQL's clocks. `now()` (and `CURRENT_TIMESTAMP`, `transaction_timestamp()`) is
//! the time the transaction began: inside a `BEGIN` block every statement sees the
//! block's start, as rows stamped by one transaction are in Postgres; outside one it is
//! the statement's start. `statement_timestamp()` is always the statement's start, and
//! `clock_timestamp()` the time it is called, row by row.
//!
//! DataFusion's `now()` is the start of each query it plans, and one statement may plan
//! several (the VALUES of an INSERT, then its column defaults); the first two wrap it
//! and give the time the client's statement arrived ([`StatementClock`]) instead, or the
//! query's start where no statement was marked.

use std::sync::Arc;

use datafusion::arrow::array::TimestampNanosecondArray;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::engine::tx::TxSlot;

/// When the session's current statement arrived; set by the wire as each statement
/// message comes in.
#[derive(Debug, Default)]
pub struct StatementClock(parking_lot::Mutex<Option<chrono::DateTime<chrono::Utc>>>);

impl StatementClock {
    pub fn mark(&self) {
        *self.0.lock() = Some(chrono::Utc::now());
    }

    fn get(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.0.lock()
    }
}

/// Which clock a function reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// The block's start inside a block, else the statement's.
    Transaction,
    /// The statement's start.
    Statement,
    /// The time of the call.
    Wall,
}

/// `now()`, `statement_timestamp()` or `clock_timestamp()` of one session.
#[derive(Debug)]
pub struct Clock {
    kind: Kind,
    /// DataFusion's `now()` (as configured): its return type and statement time.
    inner: ScalarUDF,
    tx: Arc<TxSlot>,
    statement: Arc<StatementClock>,
    signature: Signature,
    aliases: Vec<String>,
}

impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.inner == other.inner
            && Arc::ptr_eq(&self.tx, &other.tx)
            && Arc::ptr_eq(&self.statement, &other.statement)
    }
}

impl Eq for Clock {}

impl std::hash::Hash for Clock {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.inner.hash(state);
        Arc::as_ptr(&self.tx).hash(state);
        Arc::as_ptr(&self.statement).hash(state);
    }
}

/// The session's clock functions, built on the `now` its context has (`None` if it has
/// none, when they are left as DataFusion's).
pub fn functions(
    now: Option<Arc<ScalarUDF>>,
    tx: &Arc<TxSlot>,
    statement: &Arc<StatementClock>,
) -> Vec<ScalarUDF> {
    let Some(now) = now else {
        return vec![];
    };
    [Kind::Transaction, Kind::Statement, Kind::Wall]
        .into_iter()
        .map(|kind| {
            ScalarUDF::new_from_impl(Clock::new(
                kind,
                (*now).clone(),
                tx.clone(),
                statement.clone(),
            ))
        })
        .collect()
}

impl Clock {
    fn new(kind: Kind, inner: ScalarUDF, tx: Arc<TxSlot>, statement: Arc<StatementClock>) -> Clock {
        let (volatility, aliases): (_, &[&str]) = match kind {
            Kind::Transaction => (
                Volatility::Stable,
                &["current_timestamp", "transaction_timestamp"],
            ),
            Kind::Statement => (Volatility::Stable, &[]),
            Kind::Wall => (Volatility::Volatile, &[]),
        };
        Clock {
            kind,
            inner,
            tx,
            statement,
            signature: Signature::nullary(volatility),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }
}

impl ScalarUDFImpl for Clock {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Transaction => "now",
            Kind::Statement => "statement_timestamp",
            Kind::Wall => "clock_timestamp",
        }
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// A `SET TIME ZONE` rebuilds DataFusion's `now()`; the clock follows it.
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Clock::new(
            self.kind,
            inner,
            self.tx.clone(),
            self.statement.clone(),
        )))
    }

    /// `timestamp with time zone`, as in Postgres: DataFusion's `now()` has no zone
    /// unless the session set one, which would make clients read a local time.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let field = self.inner.return_field_from_args(args)?;
        let ty = match field.data_type() {
            DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, Some(Arc::from("UTC"))),
            other => other.clone(),
        };
        Ok(Arc::new(
            field
                .as_ref()
                .clone()
                .with_name(self.name())
                .with_data_type(ty),
        ))
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("return_field_from_args should be called instead")
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.kind != Kind::Wall {
            return datafusion::common::internal_err!(
                "{} should have been simplified",
                self.name()
            );
        }
        let tz = match args.return_field.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let out: TimestampNanosecondArray = (0..args.number_rows)
            .map(|_| chrono::Utc::now().timestamp_nanos_opt())
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out.with_timezone_opt(tz))))
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        if self.kind == Kind::Wall {
            return Ok(ExprSimplifyResult::Original(args));
        }
        let started = match self.kind {
            Kind::Transaction => self.tx.started().or_else(|| self.statement.get()),
            _ => self.statement.get(),
        };
        // The query's start, in DataFusion's type; the block's or statement's replaces it.
        match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(Expr::Literal(
                ScalarValue::TimestampNanosecond(at, tz),
                meta,
            )) => Ok(ExprSimplifyResult::Simplified(Expr::Literal(
                ScalarValue::TimestampNanosecond(
                    started.and_then(|s| s.timestamp_nanos_opt()).or(at),
                    tz.or_else(|| Some(Arc::from("UTC"))),
                ),
                meta,
            ))),
            other => Ok(other),
        }
    }
}
