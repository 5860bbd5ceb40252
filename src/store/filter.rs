//! The backend-neutral search filter: what the planner pushes into a vector search.
//! Each vector index translates a [`Predicate`] into its own filter language; the SQL
//! layer re-checks every predicate against the fetched rows, so a translation may
//! return a superset of the matching points but never lose one.

use std::fmt;

use crate::types::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    pub fn symbol(&self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }

    /// The range a comparison with `x` allows, as (lt, gt, gte, lte) bounds; `<>` has none
    /// (it is not a range).
    pub fn bounds<T: Copy>(&self, x: T) -> [Option<T>; 4] {
        match self {
            CmpOp::Eq => [None, None, Some(x), Some(x)],
            CmpOp::Lt => [Some(x), None, None, None],
            CmpOp::LtEq => [None, None, None, Some(x)],
            CmpOp::Gt => [None, Some(x), None, None],
            CmpOp::GtEq => [None, None, Some(x), None],
            CmpOp::NotEq => [None; 4],
        }
    }

    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    pub fn flip(&self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
            other => *other,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Compare {
        column: String,
        op: CmpOp,
        value: Scalar,
    },
    In {
        column: String,
        values: Vec<Scalar>,
    },
    IsNull {
        column: String,
    },
    /// `value = ANY(column)` for an array column.
    Contains {
        column: String,
        value: Scalar,
    },
}

impl Predicate {
    /// Whether the predicate tests values inside json columns (`meta.key`, or the list
    /// of their keys): payload fields without an index.
    pub fn reads_json(&self) -> bool {
        match self {
            Predicate::And(ps) | Predicate::Or(ps) => ps.iter().any(Predicate::reads_json),
            Predicate::Not(p) => p.reads_json(),
            Predicate::Compare { column, .. }
            | Predicate::In { column, .. }
            | Predicate::IsNull { column }
            | Predicate::Contains { column, .. } => {
                column.contains('.') || column == JSON_KEYS_FIELD
            }
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join(f: &mut fmt::Formatter<'_>, items: &[Predicate], sep: &str) -> fmt::Result {
            write!(f, "(")?;
            for (i, p) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {sep} ")?;
                }
                write!(f, "{p}")?;
            }
            write!(f, ")")
        }
        match self {
            Predicate::And(ps) => join(f, ps, "AND"),
            Predicate::Or(ps) => join(f, ps, "OR"),
            Predicate::Not(p) => write!(f, "NOT {p}"),
            Predicate::Compare { column, op, value } => {
                write!(f, "{column} {} {value}", op.symbol())
            }
            Predicate::In { column, values } => {
                write!(f, "{column} IN (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, ")")
            }
            Predicate::IsNull { column } => write!(f, "{column} IS NULL"),
            Predicate::Contains { column, value } => write!(f, "{value} = ANY({column})"),
        }
    }
}

/// A row value as it is kept in the index payload: integers (and timestamps and dates,
/// as integers) are numbers, text and uuids strings, arrays arrays, NULL null.
pub fn payload_value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) | Value::Timestamp(i) => J::from(*i),
        Value::Date(d) => J::from(*d),
        Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Text(s) => J::String(s.clone()),
        Value::Uuid(u) => J::String(u.to_string()),
        Value::TextArray(a) => J::Array(a.iter().flatten().map(|s| J::String(s.clone())).collect()),
        Value::IntArray(a) => J::Array(a.iter().flatten().map(|i| J::from(*i)).collect()),
        Value::Array(a) => J::Array(
            a.iter()
                .filter(|x| !x.is_null())
                .map(payload_value)
                .collect(),
        ),
        Value::Vector(_) | Value::Bytes(_) => J::Null,
        Value::Decimal(u, sc) => crate::types::format_decimal(*u, *sc)
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(J::Number)
            .unwrap_or(J::Null),
    }
}

/// The payload field that lists the object keys inside a row's json and jsonb values,
/// each as its dotted path from the column (`meta.topic`, `meta.nested.k`; keys of
/// objects inside arrays too), for `?`, `exists` and `IS NOT NULL` filters.
pub const JSON_KEYS_FIELD: &str = "_vg_json_keys";

/// Whether a json key can be part of a payload path (`meta.key`).
pub fn addressable_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A json or jsonb value (its text) as the payload keeps it: the nested document, so
/// that filters address `column.key.key`. A string that reads as a number is kept with
/// that number beside it (`"7"` as `["7", 7]`), so that `(meta->>'n')::int > 3` can be a
/// range filter that misses no row. `keys` collects the addressable object keys.
pub fn json_payload(text: &str, column: &str, keys: &mut Vec<String>) -> serde_json::Value {
    match crate::json::Json::parse(text) {
        Ok(v) => json_value(&v, column, keys, false),
        Err(_) => serde_json::Value::Null,
    }
}

fn json_value(
    v: &crate::json::Json,
    path: &str,
    keys: &mut Vec<String>,
    in_array: bool,
) -> serde_json::Value {
    use crate::json::Json;
    use serde_json::Value as J;
    match v {
        Json::Null => J::Null,
        Json::Bool(b) => J::Bool(*b),
        Json::Number(n) => json_number(n).unwrap_or(J::Null),
        Json::String(s) => match json_number(s.trim()) {
            Some(n) if !in_array => J::Array(vec![J::String(s.clone()), n]),
            _ => J::String(s.clone()),
        },
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // Nested arrays are flattened, as a payload filter reads them anyway.
                match json_value(item, path, keys, true) {
                    J::Array(inner) => out.extend(inner),
                    other => out.push(other),
                }
                if let Json::String(s) = item
                    && let Some(n) = json_number(s.trim())
                {
                    out.push(n);
                }
            }
            J::Array(out)
        }
        Json::Object(pairs) => {
            let mut map = serde_json::Map::new();
            for (k, val) in pairs {
                if !addressable_key(k) {
                    continue;
                }
                let p = format!("{path}.{k}");
                map.insert(k.clone(), json_value(val, &p, keys, false));
                keys.push(p);
            }
            J::Object(map)
        }
    }
}

/// A number as the payload keeps it: an integer if it is one, else a float.
fn json_number(text: &str) -> Option<serde_json::Value> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(serde_json::Value::from(i));
    }
    let f: f64 = text.parse().ok()?;
    serde_json::Number::from_f64(f).map(serde_json::Value::Number)
}
