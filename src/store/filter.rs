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
        Value::Vector(_) | Value::Bytes(_) => J::Null,
        Value::Decimal(u, sc) => crate::types::format_decimal(*u, *sc)
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(J::Number)
            .unwrap_or(J::Null),
    }
}
