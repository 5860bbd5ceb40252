//! Interval literals in Postgres' input forms. DataFusion reads `'3 hours'::interval`
//! and `INTERVAL '1 day 2 hours'`, but not a time of day (`'1 day 02:00:00'`, which
//! psycopg writes for a `timedelta` and Django adds to a date for `F('t') + timedelta`),
//! ISO 8601 (`'P1DT2H'`), `ago`, or Postgres' abbreviations (`'1 mon'`, `'2 hrs'`).
//! Such a literal is read here and written back in units DataFusion reads.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr as SqlExpr, Statement, Value, visit_expressions_mut,
};

/// An interval as Postgres keeps one: months, days and microseconds, apart.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Interval {
    pub months: i64,
    pub days: i64,
    pub micros: i64,
}

impl Interval {
    /// The interval in units DataFusion's parser reads.
    fn datafusion_text(&self) -> String {
        format!(
            "{} months {} days {} microseconds",
            self.months, self.days, self.micros
        )
    }
}

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// Postgres' interval input: `[+-]number unit` pairs (any of Postgres' unit spellings,
/// fractions spilling into smaller units as Postgres spills them), a time
/// `[+-]hh:mm[:ss[.ffffff]]`, a trailing `ago`, or ISO 8601's `P...T...`. `None` for
/// anything else.
pub fn parse(text: &str) -> Option<Interval> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    if let Some(iso) = t.strip_prefix('p') {
        return iso8601(iso);
    }
    let (t, ago) = match t.strip_suffix("ago") {
        Some(rest) if rest.ends_with(char::is_whitespace) => (rest.trim().to_string(), true),
        _ => (t, false),
    };
    let mut out = Interval::default();
    let mut words = t
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .peekable();
    let mut any = false;
    while let Some(w) = words.next() {
        if w.contains(':') {
            out.micros += time_of_day(w)?;
            any = true;
            continue;
        }
        // A number, its unit either glued on (`3h`) or the next word.
        let split = w
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
            .unwrap_or(w.len());
        let number: f64 = w[..split].parse().ok()?;
        // (A number alone is seconds.)
        let unit = if split < w.len() {
            w[split..].to_string()
        } else {
            words.next().unwrap_or("second").to_string()
        };
        add(&mut out, number, &unit)?;
        any = true;
    }
    if !any {
        return None;
    }
    if ago {
        out = Interval {
            months: -out.months,
            days: -out.days,
            micros: -out.micros,
        };
    }
    Some(out)
}

/// `number unit` added to `out`; a fraction of a month becomes days (30 to the month)
/// and a fraction of a day microseconds, as Postgres spills them.
fn add(out: &mut Interval, n: f64, unit: &str) -> Option<()> {
    let months = |m: f64, out: &mut Interval| {
        let whole = m.trunc();
        out.months += whole as i64;
        let days = (m - whole) * 30.0;
        out.days += days.trunc() as i64;
        out.micros += ((days - days.trunc()) * 86_400.0 * MICROS_PER_SECOND).round() as i64;
    };
    let days = |d: f64, out: &mut Interval| {
        out.days += d.trunc() as i64;
        out.micros += ((d - d.trunc()) * 86_400.0 * MICROS_PER_SECOND).round() as i64;
    };
    let seconds = |s: f64, out: &mut Interval| out.micros += (s * MICROS_PER_SECOND).round() as i64;
    match unit.trim_end_matches('s') {
        "microsecond" | "usec" | "u" | "us" => seconds(n / MICROS_PER_SECOND, out),
        "millisecond" | "msec" | "m" if unit.starts_with("ms") || unit.starts_with("mil") => {
            seconds(n / 1000.0, out)
        }
        "second" | "sec" | "" => seconds(n, out),
        "minute" | "min" | "m" => seconds(n * 60.0, out),
        "hour" | "hr" | "h" => seconds(n * 3600.0, out),
        "day" | "d" => days(n, out),
        "week" | "w" => days(n * 7.0, out),
        "month" | "mon" => months(n, out),
        "year" | "yr" | "y" => months(n * 12.0, out),
        "decade" | "dec" => months(n * 120.0, out),
        "century" | "centurie" | "c" => months(n * 1200.0, out),
        "millennium" | "millennia" | "mil" => months(n * 12000.0, out),
        _ => return None,
    }
    Some(())
}

/// `[+-]hh:mm[:ss[.ffffff]]` in microseconds.
fn time_of_day(w: &str) -> Option<i64> {
    let (sign, w) = match w.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, w.strip_prefix('+').unwrap_or(w)),
    };
    let parts: Vec<&str> = w.split(':').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let hours: f64 = parts[0].parse().ok()?;
    let minutes: f64 = parts[1].parse().ok()?;
    let secs: f64 = match parts.get(2) {
        Some(s) => s.parse().ok()?,
        None => 0.0,
    };
    if hours.fract() != 0.0 || minutes.fract() != 0.0 || !(0.0..60.0).contains(&minutes) {
        return None;
    }
    Some((sign * (hours * 3600.0 + minutes * 60.0 + secs) * MICROS_PER_SECOND).round() as i64)
}

/// ISO 8601's `nYnMnWnD[TnHnMnS]` (after the `P`).
fn iso8601(t: &str) -> Option<Interval> {
    let mut out = Interval::default();
    let (date, time) = match t.split_once('t') {
        Some((d, t)) => (d, Some(t)),
        None => (t, None),
    };
    let mut any = false;
    for (part, in_time) in [(date, false), (time.unwrap_or(""), true)] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || matches!(c, '.' | '-' | '+') {
                number.push(c);
                continue;
            }
            let n: f64 = number.parse().ok()?;
            number.clear();
            let unit = match (c, in_time) {
                ('y', false) => "year",
                ('m', false) => "month",
                ('w', false) => "week",
                ('d', false) => "day",
                ('h', true) => "hour",
                ('m', true) => "minute",
                ('s', true) => "second",
                _ => return None,
            };
            add(&mut out, n, unit)?;
            any = true;
        }
        if !number.is_empty() {
            return None;
        }
    }
    any.then_some(out)
}

/// `'...'::interval`, `CAST('...' AS interval)` and `INTERVAL '...'` (without a
/// qualifier) of a literal in one of the forms above become the literal in DataFusion's
/// units; a literal not read here is left as it is (DataFusion says what is wrong).
pub fn interval_literals(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        let literal = match e {
            SqlExpr::Cast {
                expr,
                data_type: DataType::Interval { fields: None, .. },
                ..
            } => expr.as_mut(),
            SqlExpr::Interval(i)
                if i.leading_field.is_none()
                    && i.last_field.is_none()
                    && i.fractional_seconds_precision.is_none() =>
            {
                i.value.as_mut()
            }
            _ => return ControlFlow::<()>::Continue(()),
        };
        if let SqlExpr::Value(v) = literal
            && let Value::SingleQuotedString(text) = &mut v.value
            && let Some(parsed) = parse(text)
        {
            *text = parsed.datafusion_text();
        }
        ControlFlow::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::{Interval, parse};

    fn iv(months: i64, days: i64, micros: i64) -> Option<Interval> {
        Some(Interval {
            months,
            days,
            micros,
        })
    }

    #[test]
    fn postgres_input_forms() {
        const H: i64 = 3_600_000_000;
        assert_eq!(parse("1 day 0:00:00"), iv(0, 1, 0));
        assert_eq!(
            parse("1 day 02:03:04.5"),
            iv(0, 1, 2 * H + 3 * 60_000_000 + 4_500_000)
        );
        assert_eq!(parse("5:00:00.000003"), iv(0, 0, 5 * H + 3));
        assert_eq!(
            parse("-1 days +02:03:00"),
            iv(0, -1, 2 * H + 3 * 60_000_000)
        );
        assert_eq!(parse("1 year 2 mons -3 days"), iv(14, -3, 0));
        assert_eq!(parse("3 hours ago"), iv(0, 0, -3 * H));
        assert_eq!(parse("2 hrs 30 min"), iv(0, 0, 2 * H + 30 * 60_000_000));
        assert_eq!(parse("1.5 days"), iv(0, 1, 12 * H));
        assert_eq!(parse("1.5 months"), iv(1, 15, 0));
        assert_eq!(parse("P1DT2H"), iv(0, 1, 2 * H));
        assert_eq!(parse("P1Y2M3W"), iv(14, 21, 0));
        assert_eq!(parse("10 ms"), iv(0, 0, 10_000));
        assert_eq!(parse("-00:00:01"), iv(0, 0, -1_000_000));
        assert_eq!(parse("1 fortnight"), None);
        assert_eq!(parse("x"), None);
        assert_eq!(parse("12:99"), None);
    }

    #[test]
    fn literals_are_written_in_datafusion_units() {
        assert_eq!(
            crate::sql::rewritten(
                "SELECT t + '1 day 0:00:00'::interval, INTERVAL '2 hrs', INTERVAL '1' DAY, 'x'::interval",
                super::interval_literals
            ),
            "SELECT t + '0 months 1 days 0 microseconds'::INTERVAL, \
             INTERVAL '0 months 0 days 7200000000 microseconds', INTERVAL '1' DAY, 'x'::INTERVAL"
        );
    }
}
