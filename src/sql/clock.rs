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

use std::ops::ControlFlow;
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
            .map(|_| chrono::Utc::now().timestamp_nanos_opt().map(whole_micros))
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
                    started
                        .and_then(|s| s.timestamp_nanos_opt())
                        .or(at)
                        .map(whole_micros),
                    tz.or_else(|| Some(Arc::from("UTC"))),
                ),
                meta,
            ))),
            other => Ok(other),
        }
    }
}

/// A time in nanoseconds cut to whole microseconds: Postgres' clocks tick in
/// microseconds, so a time read twice compares equal to what was stored.
fn whole_micros(nanos: i64) -> i64 {
    nanos - nanos.rem_euclid(1000)
}

/// A time zone Postgres accepts, as it shows it.
pub(crate) struct Zone {
    /// Spelled as in the tz database (`UTC` for `utc`), or an offset as written.
    pub name: String,
    /// Whether its offset is zero all year.
    pub utc: bool,
}

/// The zone `zone` names (`None`: not a zone): a name of the tz database in any case,
/// `Z`, or an offset in hours (`-8`, `+05:30`).
pub(crate) fn time_zone(zone: &str) -> Option<Zone> {
    use chrono::{Offset, TimeZone};
    if let Some(tz) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|t| t.name().eq_ignore_ascii_case(zone))
    {
        let zero = |month: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, month, 1)
                .and_then(|d| d.and_hms_opt(12, 0, 0))
                .is_some_and(|at| tz.offset_from_utc_datetime(&at).fix().local_minus_utc() == 0)
        };
        return Some(Zone {
            name: tz.name().to_string(),
            utc: zero(1) && zero(7),
        });
    }
    let offset = |utc| {
        Some(Zone {
            name: zone.to_string(),
            utc,
        })
    };
    if zone.eq_ignore_ascii_case("z") {
        return offset(true);
    }
    // An offset: [+-]hours[:minutes[:seconds]], or a number of hours.
    let digits = zone.strip_prefix(['+', '-']).unwrap_or(zone);
    let numbers: Option<Vec<f64>> = digits.split(':').map(|p| p.parse::<f64>().ok()).collect();
    let numbers = numbers.filter(|n| !n.is_empty() && n.len() <= 3)?;
    if numbers.iter().any(|n| !n.is_finite() || *n < 0.0) || numbers[0] > 15.0 * 24.0 {
        return None;
    }
    offset(numbers.iter().all(|n| *n == 0.0))
}

/// `timeofday()`: the wall clock as text, as Postgres writes it
/// (`Mon Dec 07 17:29:37.669077 2026 UTC`).
pub fn timeofday() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "timeofday",
        vec![],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|_| {
            let now = chrono::Utc::now().format("%a %b %d %H:%M:%S%.6f %Y UTC");
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                now.to_string(),
            ))))
        }),
    )
}

/// SQL's clock keywords as Postgres reads them. `CURRENT_DATE`, `CURRENT_TIME`,
/// `LOCALTIME` and `LOCALTIMESTAMP` (the last two are bare names to the parser) are the
/// transaction's time, as `now()` is, as a date, a time or a timestamp without time zone
/// (in UTC, the one zone vectorgate keeps); with a precision (`CURRENT_TIMESTAMP(3)`,
/// `LOCALTIMESTAMP(0)`, 0 to 6) rounded to that many fractional digits of a second.
pub fn sql_clocks(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Value as SqlValue,
        visit_expressions_mut,
    };
    let _ = visit_expressions_mut(stmt, |e| {
        let (name, precision) = match e {
            SqlExpr::Identifier(i) if i.quote_style.is_none() => {
                (i.value.to_ascii_lowercase(), None)
            }
            SqlExpr::Function(f)
                if f.name.0.len() == 1 && f.over.is_none() && f.filter.is_none() =>
            {
                let name = f
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .filter(|i| i.quote_style.is_none())
                    .map(|i| i.value.to_ascii_lowercase())
                    .unwrap_or_default();
                let precision = match &f.args {
                    FunctionArguments::None => None,
                    FunctionArguments::List(l) => match l.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))] => {
                            match &v.value {
                                SqlValue::Number(n, _) => match n.parse::<u32>() {
                                    // Postgres takes more than 6 as 6.
                                    Ok(p) => Some(p.min(6)),
                                    Err(_) => return ControlFlow::Continue(()),
                                },
                                _ => return ControlFlow::Continue(()),
                            }
                        }
                        [] if matches!(name.as_str(), "localtime" | "localtimestamp") => None,
                        _ => return ControlFlow::Continue(()),
                    },
                    _ => return ControlFlow::Continue(()),
                };
                (name, precision)
            }
            _ => return ControlFlow::Continue(()),
        };
        let cast = match name.as_str() {
            "current_date" => "DATE",
            "current_time" | "localtime" => "TIME",
            "localtimestamp" => "TIMESTAMP",
            "current_timestamp" if precision.is_some() => "",
            _ => return ControlFlow::Continue(()),
        };
        let at = match precision {
            None => "now()".to_string(),
            Some(p) => {
                let unit = 10u64.pow(6 - p);
                format!(
                    "date_bin(INTERVAL '{unit} microseconds', now() + INTERVAL '{} nanoseconds')",
                    unit * 500
                )
            }
        };
        let text = match cast {
            "" => at,
            ty => format!("CAST({at} AS {ty})"),
        };
        if let Ok(expr) = datafusion::sql::sqlparser::parser::Parser::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        {
            *e = expr;
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {

    use crate::sql::rewritten;

    #[test]
    fn sql_clock_keywords_read_the_transaction_clock() {
        let cases = [
            (
                "SELECT localtimestamp, localtime, current_date",
                "SELECT CAST(now() AS TIMESTAMP), CAST(now() AS TIME), CAST(now() AS DATE)",
            ),
            (
                "SELECT current_time, LOCALTIMESTAMP(0)",
                "SELECT CAST(now() AS TIME), CAST(date_bin(INTERVAL '1000000 microseconds', now() + INTERVAL '500000000 nanoseconds') AS TIMESTAMP)",
            ),
            (
                "SELECT current_timestamp(3), current_timestamp(9)",
                "SELECT date_bin(INTERVAL '1000 microseconds', now() + INTERVAL '500000 nanoseconds'), date_bin(INTERVAL '1 microseconds', now() + INTERVAL '500 nanoseconds')",
            ),
            // Left alone: now itself, a quoted column, a precision that is not a number.
            (
                "SELECT current_timestamp, \"localtime\", localtime(x) FROM t",
                "SELECT current_timestamp, \"localtime\", localtime(x) FROM t",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(rewritten(sql, super::sql_clocks), want, "{sql}");
        }
    }

    #[test]
    fn date_trunc_takes_postgres_units() {
        let cases = [
            (
                "SELECT date_trunc('milliseconds', t), date_trunc('HOURS', t), date_trunc('min', t)",
                "SELECT date_trunc('millisecond', t), date_trunc('hour', t), date_trunc('minute', t)",
            ),
            (
                "SELECT date_trunc('day', t, 'Etc/UTC'), date_trunc('day', t, 'Europe/Paris')",
                "SELECT date_trunc('day', t), date_trunc('day', t, 'Europe/Paris')",
            ),
            (
                "SELECT date_trunc('decade', t)",
                "SELECT date_trunc('decade', t)",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(
                rewritten(sql, crate::sql::compat::date_trunc_units),
                want,
                "{sql}"
            );
        }
    }
}
