//! Postgres' text forms of values held in Arrow arrays: what `x::text` gives and what
//! an array's text is made of (`{"a b",NULL}`, `2020-01-01 00:00:00.5+00`, `1e+20`,
//! `\x0102`), where Arrow's display forms differ.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};

/// Postgres' text of the (non-NULL) value at `i` of `a`; `in_array`: as an element of
/// an array is written (a boolean is `t`, not `true`).
pub fn text_of(a: &dyn Array, i: usize, in_array: bool) -> String {
    use super::pg_float;
    match a.data_type() {
        DataType::Boolean => match (a.as_boolean().value(i), in_array) {
            (true, true) => "t".into(),
            (false, true) => "f".into(),
            (b, false) => b.to_string(),
        },
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).to_string(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Float32 => pg_float(a.as_primitive::<Float32Type>().value(i) as f64, true),
        DataType::Float64 => pg_float(a.as_primitive::<Float64Type>().value(i), false),
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
        DataType::Utf8View => a.as_string_view().value(i).to_string(),
        DataType::Binary => super::format_bytea(a.as_binary::<i32>().value(i)),
        DataType::LargeBinary => super::format_bytea(a.as_binary::<i64>().value(i)),
        DataType::BinaryView => super::format_bytea(a.as_binary_view().value(i)),
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(i);
            chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                .map(|d| d.naive_utc().format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        }
        DataType::Decimal128(_, s) => {
            super::format_decimal(a.as_primitive::<Decimal128Type>().value(i), *s)
        }
        DataType::Timestamp(unit, tz) => {
            let micros = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i) * 1_000_000,
                TimeUnit::Millisecond => {
                    a.as_primitive::<TimestampMillisecondType>().value(i) * 1_000
                }
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a
                    .as_primitive::<TimestampNanosecondType>()
                    .value(i)
                    .div_euclid(1_000),
            };
            timestamp_text(micros, tz.is_some())
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let items = match a.data_type() {
                DataType::List(_) => a.as_list::<i32>().value(i),
                DataType::LargeList(_) => a.as_list::<i64>().value(i),
                _ => a.as_fixed_size_list().value(i),
            };
            array_text(items.as_ref())
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            interval_text(
                i64::from(v.months),
                i64::from(v.days),
                v.nanoseconds.div_euclid(1_000),
            )
        }
        _ => datafusion::arrow::util::display::array_value_to_string(a, i).unwrap_or_default(),
    }
}

/// An interval's text in Postgres' default style: `1 year 2 mons -3 days +04:05:06.5`
/// (a `+` on a field after a negative one; `00:00:00` for nothing).
pub fn interval_text(months: i64, days: i64, micros: i64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut negative_before = false;
    let mut field = |n: i64, unit: &str, parts: &mut Vec<String>| {
        if n == 0 {
            return;
        }
        let sign = if n > 0 && negative_before { "+" } else { "" };
        negative_before |= n < 0;
        let plural = if n == 1 { "" } else { "s" };
        parts.push(format!("{sign}{n} {unit}{plural}"));
    };
    field(months / 12, "year", &mut parts);
    field(months % 12, "mon", &mut parts);
    field(days, "day", &mut parts);
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 {
            "-"
        } else if negative_before {
            "+"
        } else {
            ""
        };
        let m = micros.unsigned_abs();
        let secs = m / 1_000_000;
        let mut t = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        let fraction = m % 1_000_000;
        if fraction != 0 {
            t.push('.');
            t.push_str(format!("{fraction:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

/// A timestamp's text: `2020-01-01 00:00:00.5`, with `+00` for one with a time zone
/// (vectorgate's zone is UTC).
fn timestamp_text(micros: i64, zoned: bool) -> String {
    let secs = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let Some(at) = chrono::DateTime::from_timestamp(secs, 0) else {
        return micros.to_string();
    };
    let mut s = at.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string();
    if fraction != 0 {
        s.push('.');
        s.push_str(format!("{fraction:06}").trim_end_matches('0'));
    }
    if zoned {
        s.push_str("+00");
    }
    s
}

/// An array's text: `{a,"b c",NULL}`, an element quoted where Postgres quotes it, an
/// array of arrays as `{{1,2},{3,4}}`.
fn array_text(items: &dyn Array) -> String {
    let nested = matches!(
        items.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    );
    let mut out = String::from("{");
    for k in 0..items.len() {
        if k > 0 {
            out.push(',');
        }
        if items.is_null(k) {
            out.push_str("NULL");
        } else if nested {
            out.push_str(&text_of(items, k, true));
        } else {
            out.push_str(&super::array_element(&text_of(items, k, true)));
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListBuilder, StringBuilder as Sb, TimestampMicrosecondArray};

    #[test]
    fn intervals_in_postgres_style() {
        const H: i64 = 3_600_000_000;
        assert_eq!(interval_text(0, 1, 0), "1 day");
        assert_eq!(
            interval_text(14, -3, 4 * H + 500_000),
            "1 year 2 mons -3 days +04:00:00.5"
        );
        assert_eq!(interval_text(-1, 0, -1_000_000), "-1 mons -00:00:01");
        assert_eq!(interval_text(-12, 2, 0), "-1 years +2 days");
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(interval_text(0, 0, 26 * H), "26:00:00");
    }

    #[test]
    fn timestamps_and_arrays_are_written_as_postgres_writes_them() {
        let ts = TimestampMicrosecondArray::from(vec![1_577_836_800_500_000]).with_timezone("UTC");
        assert_eq!(text_of(&ts, 0, false), "2020-01-01 00:00:00.5+00");
        let naive = TimestampMicrosecondArray::from(vec![1_577_836_800_000_000]);
        assert_eq!(text_of(&naive, 0, false), "2020-01-01 00:00:00");
        let mut b = ListBuilder::new(Sb::new());
        b.values().append_value("a b");
        b.values().append_null();
        b.values().append_value("c");
        b.values().append_value("");
        b.values().append_value("x}\"");
        b.append(true);
        let list = b.finish();
        assert_eq!(text_of(&list, 0, false), r#"{"a b",NULL,c,"","x}\""}"#);
    }
}
