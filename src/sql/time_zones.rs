//! `x AT TIME ZONE zone` as Postgres reads it. Of a `timestamp with time zone` it is the
//! wall clock in that zone, a `timestamp` without one (what Django's `Trunc`/`Extract`
//! and `dates()` send, `date_trunc('month', t AT TIME ZONE 'America/Chicago')`); of a
//! `timestamp` it is the instant whose wall clock in that zone it is, a `timestamp with
//! time zone`. DataFusion reads both as a change of the value's zone label, so the first
//! came back as the same instant labelled with the zone (Django then took 06:00 in
//! Chicago for midnight). The operator becomes `vg_at_time_zone(x, zone)`, below.

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{LocalResult, TimeZone};
use datafusion::arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Statement, visit_expressions_mut};

use crate::error::Error;

/// `x AT TIME ZONE z` becomes `vg_at_time_zone(x, z)`.
pub fn at_time_zone(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::AtTimeZone {
            timestamp,
            time_zone,
        } = e
        {
            *e = super::pgvector::call(
                "vg_at_time_zone",
                vec![(**timestamp).clone(), (**time_zone).clone()],
            );
        }
        ControlFlow::<()>::Continue(())
    });
}

const UTC: &str = "UTC";

/// The function [`at_time_zone`] writes.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AtTimeZone {
    signature: Signature,
}

impl AtTimeZone {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(AtTimeZone {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

/// Whether a value of type `t` is a point in time (with a zone) rather than a wall clock.
fn zoned(t: &DataType) -> bool {
    match t {
        DataType::Timestamp(_, zone) => zone.is_some(),
        // An untyped literal is a `timestamp with time zone`, as in Postgres.
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
        _ => false,
    }
}

fn result_type(t: &DataType) -> Result<DataType> {
    match t {
        DataType::Timestamp(..) | DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ok(
            DataType::Timestamp(TimeUnit::Microsecond, (!zoned(t)).then(|| UTC.into())),
        ),
        DataType::Date32 | DataType::Date64 => {
            Ok(DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())))
        }
        other => Err(DataFusionError::External(Box::new(
            Error::UndefinedFunction(format!(
                "function timezone(unknown, {}) does not exist",
                super::constraints::sql_type_name(other)
            )),
        ))),
    }
}

/// The tz-database zone a name gives (any case), as Postgres' AT TIME ZONE reads it.
fn zone_named(name: &str) -> Result<chrono_tz::Tz> {
    let name = name.trim();
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .copied()
        .or_else(|| {
            ["z", "utc", "gmt"]
                .contains(&name.to_ascii_lowercase().as_str())
                .then_some(chrono_tz::UTC)
        })
        .ok_or_else(|| {
            DataFusionError::External(Box::new(Error::InvalidParameter(format!(
                "time zone \"{name}\" not recognized"
            ))))
        })
}

/// `micros` (since the epoch) read in `tz`: the wall clock there of that instant
/// (`zoned`), or the instant of that wall clock there.
fn convert(micros: i64, tz: chrono_tz::Tz, zoned: bool) -> Option<i64> {
    let at = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    if zoned {
        return Some(
            tz.from_utc_datetime(&at)
                .naive_local()
                .and_utc()
                .timestamp_micros(),
        );
    }
    let instant = match tz.from_local_datetime(&at) {
        // A wall clock the zone shows twice (a fall-back hour): the later, as Postgres.
        LocalResult::Single(t) | LocalResult::Ambiguous(_, t) => t,
        // A wall clock the zone skips (a spring-forward hour): read with the offset in
        // force just before it.
        LocalResult::None => {
            let before = at - chrono::Duration::hours(3);
            let offset = tz.offset_from_local_datetime(&before).earliest()?;
            return Some(
                (at - chrono::Duration::seconds(i64::from(
                    chrono::Offset::fix(&offset).local_minus_utc(),
                )))
                .and_utc()
                .timestamp_micros(),
            );
        }
    };
    Some(instant.timestamp_micros())
}

impl ScalarUDFImpl for AtTimeZone {
    fn name(&self) -> &str {
        "vg_at_time_zone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        result_type(arg_types.first().unwrap_or(&DataType::Null))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let t = args
            .arg_fields
            .first()
            .map_or(DataType::Null, |f| f.data_type().clone());
        Ok(Arc::new(Field::new(self.name(), result_type(&t)?, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let values = args.args[0].to_array(args.number_rows)?;
        let zones = args.args[1].to_array(args.number_rows)?;
        let from = values.data_type().clone();
        let is_zoned = zoned(&from);
        // Read as microseconds since the epoch, a wall clock read as if in UTC.
        let micros = datafusion::arrow::compute::cast(
            &values,
            &DataType::Timestamp(TimeUnit::Microsecond, is_zoned.then(|| UTC.into())),
        )?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        let zones = datafusion::arrow::compute::cast(&zones, &DataType::Utf8)?;
        let zones = zones.as_string::<i32>();
        let mut last: Option<(String, chrono_tz::Tz)> = None;
        let mut out = Vec::with_capacity(micros.len());
        for i in 0..micros.len() {
            if micros.is_null(i) || zones.is_null(i) {
                out.push(None);
                continue;
            }
            let name = zones.value(i);
            let tz = match &last {
                Some((n, tz)) if n == name => *tz,
                _ => {
                    let tz = zone_named(name)?;
                    last = Some((name.to_string(), tz));
                    tz
                }
            };
            out.push(convert(micros.value(i), tz, is_zoned));
        }
        let out = TimestampMicrosecondArray::from(out)
            .with_timezone_opt((!is_zoned).then(|| UTC.to_string()));
        super::columnar(Arc::new(out), scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::{convert, zone_named};

    #[test]
    fn wall_clocks_and_instants_in_a_zone() {
        let chicago = zone_named("america/chicago").expect("a zone");
        let noon_utc = 946_728_000_000_000; // 2000-01-01 12:00:00 UTC
        // An instant's wall clock in Chicago (UTC-6 in winter): 06:00.
        assert_eq!(
            convert(noon_utc, chicago, true),
            Some(noon_utc - 6 * 3_600_000_000)
        );
        // 12:00 on a Chicago clock is 18:00 UTC.
        assert_eq!(
            convert(noon_utc, chicago, false),
            Some(noon_utc + 6 * 3_600_000_000)
        );
        assert_eq!(
            convert(noon_utc, zone_named("UTC").expect("utc"), true),
            Some(noon_utc)
        );
        assert!(zone_named("Mars/Olympus").is_err());
    }
}
