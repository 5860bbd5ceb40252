//! The proxy's own column types and values: what a table definition declares and what
//! the stores keep. Conversions to and from Arrow live here too, so that the SQL engine,
//! the stores and the wire agree on one mapping.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, FixedSizeListArray, Float32Array,
    Float32Builder, Float64Array, Float64Builder, Int8Array, Int16Array, Int16Builder, Int32Array,
    Int32Builder, Int64Array, Int64Builder, LargeBinaryArray, LargeStringArray, ListArray,
    ListBuilder, StringArray, StringBuilder, StringViewArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod binary;
pub mod pg_text;
pub mod sparse;

/// OID the proxy gives pgvector's `vector` type (as arrow-pg and the catalog do).
pub const VECTOR_OID: i32 = 16385;
/// OID of pgvector's `halfvec` (its array type `_halfvec` is the next).
pub const HALFVEC_OID: i32 = VECTOR_OID + 2;
/// OID of pgvector's `sparsevec` (its array type `_sparsevec` is the next).
pub const SPARSEVEC_OID: i32 = VECTOR_OID + 4;

/// Field metadata that marks a pgvector `vector` column for the wire encoder.
pub const PG_VECTOR_KEY: &str = "pg.vector";

/// Field metadata that marks a `uuid` column (kept as text) for the wire encoder.
pub const PG_UUID_KEY: &str = "vectorgate.uuid";
/// Field metadata naming the Postgres type a result column has where its Arrow type
/// says less: `oid[]` (an `int4` list), `int2[]` (kept as `{1,2}` text). Set by the SQL
/// layer on the catalog's columns; the wire announces the column as that type.
pub const PG_TYPE_KEY: &str = "vectorgate.pg_type";

/// The [`PG_TYPE_KEY`] of a `halfvec` column.
pub const HALFVEC: &str = "halfvec";
/// The [`PG_TYPE_KEY`] of a `sparsevec` column (its values are its text).
pub const SPARSEVEC: &str = "sparsevec";
/// The [`PG_TYPE_KEY`]s of `bit` and `bit varying` columns (their values are `0`s and
/// `1`s).
pub const BIT: &str = "bit";
pub const VARBIT: &str = "varbit";
/// A `varchar(n)` column's values (text), announced as `varchar` with the typmod under
/// [`PG_TYPMOD_KEY`], as Postgres describes a table's column (Django's `inspectdb`
/// reads `max_length` from it).
pub const VARCHAR: &str = "varchar";
/// Field metadata: the `atttypmod` a result column is announced with.
pub const PG_TYPMOD_KEY: &str = "vectorgate.pg_typmod";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    SmallInt,
    Int,
    BigInt,
    Real,
    Double,
    Bool,
    Text,
    Uuid,
    Timestamp,
    TimestampTz,
    Date,
    TextArray,
    IntArray,
    BigIntArray,
    Vector(usize),
    /// pgvector's `halfvec(n)`: each element kept at half precision (IEEE binary16),
    /// held as the f32 it rounds to; 0: no dimension declared.
    HalfVec(usize),
    /// pgvector's `sparsevec(n)`: kept as its canonical text (see [`sparse`]);
    /// 0: no dimension declared.
    SparseVec(usize),
    /// `bit(n)` (pgvector's binary vectors): kept as its text, `0`s and `1`s.
    Bit(usize),
    /// `bit varying(n)` (0: no limit), kept as `bit(n)` is.
    VarBit(usize),
    Bytea,
    /// `numeric(precision, scale)`, kept as a 128-bit decimal.
    Numeric(u8, i8),
    /// `jsonb`: kept as its text in Postgres' output form (see [`crate::json`]).
    Jsonb,
    /// `json`: kept as the text written, checked on the way in.
    Json,
    /// A one-dimensional array of any other scalar type (`float8[]`, `uuid[]`,
    /// `timestamptz[]`, `numeric(10,2)[]`, ...); `text[]`, `integer[]` and `bigint[]`
    /// are the variants above, as tables made before this one keep them.
    Array(Box<ColumnType>),
}

impl ColumnType {
    /// Postgres spelling, as `format_type` would print it.
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::SmallInt => "smallint".into(),
            ColumnType::Int => "integer".into(),
            ColumnType::BigInt => "bigint".into(),
            ColumnType::Real => "real".into(),
            ColumnType::Double => "double precision".into(),
            ColumnType::Bool => "boolean".into(),
            ColumnType::Text => "text".into(),
            ColumnType::Uuid => "uuid".into(),
            ColumnType::Timestamp => "timestamp without time zone".into(),
            ColumnType::TimestampTz => "timestamp with time zone".into(),
            ColumnType::Date => "date".into(),
            ColumnType::TextArray => "text[]".into(),
            ColumnType::IntArray => "integer[]".into(),
            ColumnType::BigIntArray => "bigint[]".into(),
            ColumnType::Vector(0) => "vector".into(),
            ColumnType::Vector(n) => format!("vector({n})"),
            ColumnType::HalfVec(0) => "halfvec".into(),
            ColumnType::HalfVec(n) => format!("halfvec({n})"),
            ColumnType::SparseVec(0) => "sparsevec".into(),
            ColumnType::SparseVec(n) => format!("sparsevec({n})"),
            ColumnType::Bit(n) => format!("bit({n})"),
            ColumnType::VarBit(0) => "bit varying".into(),
            ColumnType::VarBit(n) => format!("bit varying({n})"),
            ColumnType::Bytea => "bytea".into(),
            ColumnType::Numeric(p, s) => format!("numeric({p},{s})"),
            ColumnType::Jsonb => "jsonb".into(),
            ColumnType::Json => "json".into(),
            ColumnType::Array(e) => format!("{}[]", e.sql_name()),
        }
    }

    /// The element type of an array type (`text[]`'s text too); None for a scalar.
    pub fn element(&self) -> Option<ColumnType> {
        match self {
            ColumnType::TextArray => Some(ColumnType::Text),
            ColumnType::IntArray => Some(ColumnType::Int),
            ColumnType::BigIntArray => Some(ColumnType::BigInt),
            ColumnType::Array(e) => Some(e.as_ref().clone()),
            _ => None,
        }
    }

    /// The array type of elements of `self`, as a column declared `<self>[]` is kept;
    /// None for a type with no array type here (vectors, bit strings, arrays).
    pub fn array_of(self) -> Option<ColumnType> {
        Some(match self {
            ColumnType::Text => ColumnType::TextArray,
            ColumnType::Int => ColumnType::IntArray,
            ColumnType::BigInt => ColumnType::BigIntArray,
            ColumnType::SmallInt
            | ColumnType::Real
            | ColumnType::Double
            | ColumnType::Bool
            | ColumnType::Uuid
            | ColumnType::Timestamp
            | ColumnType::TimestampTz
            | ColumnType::Date
            | ColumnType::Bytea
            | ColumnType::Numeric(..)
            | ColumnType::Jsonb
            | ColumnType::Json => ColumnType::Array(Box::new(self)),
            _ => return None,
        })
    }

    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Real => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Text
            | ColumnType::Uuid
            | ColumnType::SparseVec(_)
            | ColumnType::Bit(_)
            | ColumnType::VarBit(_) => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
            ColumnType::Date => DataType::Date32,
            ColumnType::TextArray => list_of(DataType::Utf8),
            ColumnType::IntArray => list_of(DataType::Int32),
            ColumnType::BigIntArray => list_of(DataType::Int64),
            ColumnType::Vector(_) | ColumnType::HalfVec(_) => list_of(DataType::Float32),
            ColumnType::Bytea => DataType::Binary,
            ColumnType::Numeric(p, s) => DataType::Decimal128(*p, *s),
            ColumnType::Jsonb | ColumnType::Json => DataType::Utf8,
            ColumnType::Array(e) => list_of(e.arrow_type()),
        }
    }

    pub fn arrow_field(&self, name: &str, nullable: bool) -> Field {
        let f = Field::new(name, self.arrow_type(), nullable);
        match self {
            ColumnType::Vector(_) => f.with_metadata(HashMap::from([(
                PG_VECTOR_KEY.to_string(),
                "vector".to_string(),
            )])),
            // Encoded as a vector in text (the same `[1,2]`); announced, and written in
            // binary, as a halfvec (see `wire::encode`).
            ColumnType::HalfVec(_) => f.with_metadata(HashMap::from([
                (PG_VECTOR_KEY.to_string(), "vector".to_string()),
                (PG_TYPE_KEY.to_string(), HALFVEC.to_string()),
            ])),
            ColumnType::Uuid => f.with_metadata(HashMap::from([(
                PG_UUID_KEY.to_string(),
                "uuid".to_string(),
            )])),
            ColumnType::SparseVec(_) => f.with_metadata(HashMap::from([(
                PG_TYPE_KEY.to_string(),
                SPARSEVEC.to_string(),
            )])),
            ColumnType::Bit(_) | ColumnType::VarBit(_) => f.with_metadata(HashMap::from([(
                PG_TYPE_KEY.to_string(),
                if matches!(self, ColumnType::Bit(_)) {
                    BIT
                } else {
                    VARBIT
                }
                .to_string(),
            )])),
            ColumnType::Jsonb => f.with_metadata(crate::json::mark(crate::json::Kind::Jsonb)),
            ColumnType::Json => f.with_metadata(crate::json::mark(crate::json::Kind::Json)),
            // Elements kept as text that are not text: the wire announces the array
            // type (and writes its binary form) by this mark.
            ColumnType::Array(e)
                if matches!(**e, ColumnType::Uuid | ColumnType::Jsonb | ColumnType::Json) =>
            {
                f.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), self.sql_name())]))
            }
            _ => f,
        }
    }

    /// A dense vector type's declared dimension (0: none declared); None for any other
    /// type.
    pub fn vector_dims(&self) -> Option<usize> {
        match self {
            ColumnType::Vector(n) | ColumnType::HalfVec(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether the type is one of pgvector's vector types (a sparsevec too, which has
    /// no dense dimension).
    pub fn is_vector(&self) -> bool {
        self.vector_dims().is_some() || matches!(self, ColumnType::SparseVec(_))
    }

    /// Whether the type can be a primary-key column.
    pub fn is_key_type(&self) -> bool {
        matches!(
            self,
            ColumnType::SmallInt
                | ColumnType::Int
                | ColumnType::BigInt
                | ColumnType::Text
                | ColumnType::Uuid
                | ColumnType::Date
                | ColumnType::Timestamp
                | ColumnType::TimestampTz
                | ColumnType::Bool
        )
    }
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(t, true)))
}

/// One stored value. Integers of every width are `Int`, floats `Float`; the column
/// type says which width the value is shown with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Uuid(uuid::Uuid),
    /// Microseconds since the Unix epoch (UTC for timestamptz).
    Timestamp(i64),
    /// Days since the Unix epoch.
    Date(i32),
    TextArray(Vec<Option<String>>),
    IntArray(Vec<Option<i64>>),
    Vector(Vec<f32>),
    Bytes(Vec<u8>),
    /// An unscaled integer and its scale: `Decimal(12345, 2)` is 123.45.
    Decimal(i128, i8),
    /// The elements of an array of a type other than text and integers (`Null` for a
    /// NULL element), each as that type's value is.
    Array(Vec<Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Parse a vector written as `[1, 2, 3]` (pgvector) or `{1,2,3}` (Postgres array).
pub fn parse_vector_text(text: &str) -> Result<Vec<f32>> {
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .or_else(|| t.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .ok_or_else(|| {
            Error::InvalidText(format!(
                "invalid input syntax for type vector: \"{}\"",
                abbreviate(text)
            ))
        })?;
    if inner.trim().is_empty() {
        return Err(Error::DataException(
            "vector must have at least 1 dimension".into(),
        ));
    }
    inner
        .split(',')
        .map(|p| {
            p.trim().parse::<f32>().map_err(|_| {
                Error::InvalidText(format!(
                    "invalid input syntax for type vector: \"{}\"",
                    abbreviate(text)
                ))
            })
        })
        .collect()
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() > 60 {
        let head: String = s.chars().take(57).collect();
        format!("{head}...")
    } else {
        s.to_string()
    }
}

/// Check a vector against a column's declared dimension (0: none declared, any is
/// taken); NaN and infinity are refused.
pub fn check_vector(v: &[f32], dim: usize) -> Result<()> {
    if dim != 0 && v.len() != dim {
        return Err(Error::DataException(format!(
            "expected {dim} dimensions, not {}",
            v.len()
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::DataException(
            "NaN and infinity are not allowed in vector".into(),
        ));
    }
    Ok(())
}

/// A bit string's text as Postgres reads it: `0`s and `1`s (after an optional `b`), or
/// hexadecimal digits after an `x`, four bits each; 22P02 for another character.
pub fn parse_bits(text: &str) -> Result<String> {
    let (hex, digits) = match text.as_bytes().first() {
        Some(b'x' | b'X') => (true, &text[1..]),
        Some(b'b' | b'B') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut out = String::with_capacity(digits.len() * if hex { 4 } else { 1 });
    for c in digits.chars() {
        if hex {
            let v = c.to_digit(16).ok_or_else(|| {
                Error::InvalidText(format!("\"{c}\" is not a valid hexadecimal digit"))
            })?;
            out.push_str(&format!("{v:04b}"));
        } else if c == '0' || c == '1' {
            out.push(c);
        } else {
            return Err(Error::InvalidText(format!(
                "\"{c}\" is not a valid binary digit"
            )));
        }
    }
    Ok(out)
}

/// Postgres' binary `bit`/`varbit`: an i32 length in bits, then the bits, eight to a
/// byte, the first in the high bit.
pub fn bits_binary(bits: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bits.len().div_ceil(8));
    out.extend_from_slice(&(bits.len() as i32).to_be_bytes());
    for chunk in bits.as_bytes().chunks(8) {
        let mut byte = 0u8;
        for (k, b) in chunk.iter().enumerate() {
            if *b == b'1' {
                byte |= 0x80 >> k;
            }
        }
        out.push(byte);
    }
    out
}

/// The bits of Postgres' binary `bit`/`varbit`.
pub fn bits_from_binary(raw: &[u8]) -> Result<String> {
    let bad = || Error::ProtocolViolation("malformed binary bit string".into());
    let len = i32::from_be_bytes(
        raw.get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    if len < 0 || raw.len() != 4 + (len as usize).div_ceil(8) {
        return Err(bad());
    }
    Ok((0..len as usize)
        .map(|i| {
            if raw[4 + i / 8] & (0x80 >> (i % 8)) != 0 {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}

fn check_sparse_dim(s: &crate::types::sparse::SparseVector, dim: usize) -> Result<()> {
    if dim != 0 && s.dim != dim {
        return Err(Error::DataException(format!(
            "expected {dim} dimensions, not {}",
            s.dim
        )));
    }
    Ok(())
}

/// The elements of a vector value: a vector, its text (`[1,2]` or `{1,2}`), or an
/// array of numbers (`ARRAY[1, 2.5]`, a `float8[]` parameter). pgvector refuses an
/// array with a NULL element.
pub fn vector_of(v: Value) -> Result<Vec<f32>> {
    let nulls = || Error::DataException("array must not contain nulls".into());
    match v {
        Value::Vector(v) => Ok(v),
        Value::Text(s) => parse_vector_text(&s),
        Value::IntArray(a) => a
            .into_iter()
            .map(|x| x.map(|i| i as f32).ok_or_else(nulls))
            .collect(),
        Value::Array(a) => a
            .into_iter()
            .map(|x| match x {
                Value::Null => Err(nulls()),
                Value::Int(i) => Ok(i as f32),
                Value::Float(f) => Ok(f as f32),
                Value::Decimal(u, s) => Ok(format_decimal(u, s).parse().unwrap_or(f32::NAN)),
                Value::Text(t) => t.trim().parse().map_err(|_| {
                    Error::InvalidText(format!(
                        "invalid input syntax for type vector: \"{}\"",
                        abbreviate(&t)
                    ))
                }),
                other => Err(Error::DatatypeMismatch(format!(
                    "cannot use a {} array as a vector",
                    value_type_name(&other)
                ))),
            })
            .collect(),
        other => Err(Error::DatatypeMismatch(format!(
            "cannot use a {} value as a vector",
            value_type_name(&other)
        ))),
    }
}

/// Each element rounded to half precision, as pgvector's `halfvec` keeps it; 22003 for
/// one beyond half's range (65504), as pgvector says.
pub fn to_half(v: Vec<f32>) -> Result<Vec<f32>> {
    v.into_iter()
        .map(|x| {
            let h = half::f16::from_f32(x).to_f32();
            if h.is_infinite() && x.is_finite() {
                Err(Error::NumericOutOfRange(format!(
                    "\"{x}\" is out of range for type halfvec"
                )))
            } else {
                Ok(h)
            }
        })
        .collect()
}

/// Format a vector the way pgvector prints it: each element as Postgres prints a float4.
pub fn format_vector(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&pg_float(*x as f64, true));
    }
    s.push(']');
    s
}

/// A float as Postgres prints it (`float8out`/`float4out` with the default
/// `extra_float_digits = 1`, and pgvector's elements): the shortest digits that read
/// back as the same float (a tie broken to even: Ryu, which Postgres uses too),
/// fixed-point when the decimal exponent is in [-4, 15) (float4: [-4, 6)), else
/// `d.ddde+XX`; `Infinity`, `NaN`. `single`: `x` is a float4.
pub fn pg_float(x: f64, single: bool) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let mut buf = ryu::Buffer::new();
    let printed = if single {
        buf.format_finite(x as f32)
    } else {
        buf.format_finite(x)
    };
    // Ryu's text (`1.0`, `0.001`, `1.2e-5`, `1e20`) as digits and a decimal exponent.
    let (negative, printed) = match printed.strip_prefix('-') {
        Some(p) => (true, p),
        None => (false, printed),
    };
    let (mantissa, exp) = match printed.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (printed, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if digits.is_empty() {
        return format!("{sign}0");
    }
    // The exponent of the first significant digit.
    let exp = exp + int.len() as i32 - 1 - lead as i32;
    let limit = if single { 6 } else { 15 };
    if (-4..limit).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// Parse a Postgres array literal such as `{a,"b c",NULL}` into its elements.
pub fn parse_pg_array(text: &str) -> Result<Vec<Option<String>>> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| {
            Error::InvalidText(format!("malformed array literal: \"{}\"", abbreviate(text)))
        })?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            item.push(c)
                        }
                    }
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => {
                        return Err(Error::InvalidText(format!(
                            "malformed array literal: \"{}\"",
                            abbreviate(text)
                        )));
                    }
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            // A backslash takes the next character as it is, quoted or not.
            let mut escaped_end = 0;
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        item.push(next);
                        escaped_end = item.len();
                    }
                } else {
                    item.push(c);
                }
            }
            // Surrounding whitespace is dropped, an escaped character kept.
            let kept = item.trim_end().len().max(escaped_end);
            item.truncate(kept);
            item = item.trim_start().to_string();
            quoted = escaped_end > 0;
        }
        if !quoted && item.eq_ignore_ascii_case("NULL") {
            out.push(None);
        } else {
            out.push(Some(item));
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => {
                return Err(Error::InvalidText(format!(
                    "malformed array literal: \"{}\"",
                    abbreviate(text)
                )));
            }
        }
    }
    Ok(out)
}

/// Parse `-12.345` into an unscaled integer at `scale`, rounding half away from zero.
pub fn parse_decimal(text: &str, scale: i8) -> Result<i128> {
    let t = text.trim();
    let bad = || {
        Error::InvalidText(format!(
            "invalid input syntax for type numeric: \"{}\"",
            abbreviate(text)
        ))
    };
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let scale = scale.max(0) as usize;
    let mut unscaled: i128 = 0;
    let over = || Error::NumericOutOfRange("numeric field overflow".into());
    for c in int
        .chars()
        .chain(frac.chars().chain(std::iter::repeat('0')).take(scale))
    {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|v| v.checked_add((c as u8 - b'0') as i128))
            .ok_or_else(over)?;
    }
    if frac.len() > scale && frac.as_bytes()[scale] >= b'5' {
        unscaled = unscaled.checked_add(1).ok_or_else(over)?;
    }
    Ok(if neg { -unscaled } else { unscaled })
}

pub fn format_decimal(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        return (unscaled * 10i128.pow((-scale) as u32)).to_string();
    }
    let s = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if s.len() <= scale {
        format!("{}{s}", "0".repeat(scale + 1 - s.len()))
    } else {
        s
    };
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{}{i}.{f}", if unscaled < 0 { "-" } else { "" })
}

fn rescale(unscaled: i128, from: i8, to: i8) -> Result<i128> {
    let over = || Error::NumericOutOfRange("numeric field overflow".into());
    if to >= from {
        unscaled
            .checked_mul(10i128.checked_pow((to - from) as u32).ok_or_else(over)?)
            .ok_or_else(over)
    } else {
        let div = 10i128.checked_pow((from - to) as u32).ok_or_else(over)?;
        let (q, r) = (unscaled / div, unscaled % div);
        Ok(if r.abs() * 2 >= div {
            q + unscaled.signum()
        } else {
            q
        })
    }
}

/// Parse Postgres' bytea text forms: `\x0a1b` hex, or the escape form.
pub fn parse_bytea(text: &str) -> Result<Vec<u8>> {
    match text.strip_prefix("\\x") {
        Some(hex) => {
            if hex.len() % 2 != 0 {
                return Err(Error::InvalidText(
                    "invalid hexadecimal data: odd number of digits".into(),
                ));
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| {
                        Error::InvalidText(format!(
                            "invalid hexadecimal digit in \"{}\"",
                            abbreviate(text)
                        ))
                    })
                })
                .collect()
        }
        None => bytea_escaped(text),
    }
}

/// bytea's escape form: `\\` is a backslash, `\ooo` an octal byte, any other byte
/// itself (22P02 for another backslash, as in Postgres).
fn bytea_escaped(text: &str) -> Result<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if let Some(o) = b.get(i + 1..i + 4).filter(|o| {
            (b'0'..=b'3').contains(&o[0]) && o[1..].iter().all(|d| (b'0'..=b'7').contains(d))
        }) {
            out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
            i += 4;
        } else {
            return Err(Error::InvalidText(
                "invalid input syntax for type bytea".into(),
            ));
        }
    }
    Ok(out)
}

/// A one-dimensional array's text (`{a,"b c",NULL}`).
pub fn array_text(items: impl Iterator<Item = Option<String>>) -> String {
    let items: Vec<String> = items
        .map(|item| match item {
            None => "NULL".into(),
            Some(s) => array_element(&s),
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// The text of an array value (`Value::Array`) of `element`s, as Postgres' input reads
/// it back to the same values: floats with all their digits, timestamps to the
/// microsecond, bytea as `\\x` hex.
pub fn array_value_text(items: &[Value], element: &ColumnType) -> String {
    array_text(items.iter().map(|v| {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => pg_float(*f, matches!(element, ColumnType::Real)),
            Value::Text(s) => s.clone(),
            Value::Uuid(u) => u.to_string(),
            Value::Timestamp(t) => {
                let at = chrono::DateTime::from_timestamp_micros(*t).unwrap_or_default();
                at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
            }
            Value::Date(d) => (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
                + chrono::Duration::days(i64::from(*d)))
            .to_string(),
            Value::Decimal(u, s) => format_decimal(*u, *s),
            Value::Bytes(b) => format_bytea(b),
            Value::Vector(v) => format_vector(v),
            other @ (Value::TextArray(_) | Value::IntArray(_) | Value::Array(_)) => {
                array_value_text(&elements(other.clone()), element)
            }
        })
    }))
}

/// An element's text inside an array's: quoted (`"b c"`) where Postgres quotes it.
pub fn array_element(s: &str) -> String {
    let quote = s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if quote {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

pub fn format_bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Parse a timestamp literal into microseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Result<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_micros());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(t, f) {
            return Ok(dt.timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(dt.and_utc().timestamp_micros());
    }
    Err(Error::InvalidText(format!(
        "invalid input syntax for type timestamp: \"{}\"",
        abbreviate(text)
    )))
}

pub fn parse_date(text: &str) -> Result<i32> {
    let d = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        Error::InvalidText(format!(
            "invalid input syntax for type date: \"{}\"",
            abbreviate(text)
        ))
    })?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    Ok((d - epoch).num_days() as i32)
}

fn int_in_range(v: i64, ty: &ColumnType) -> Result<Value> {
    let ok = match ty {
        ColumnType::SmallInt => i16::try_from(v).is_ok(),
        ColumnType::Int => i32::try_from(v).is_ok(),
        _ => true,
    };
    if ok {
        Ok(Value::Int(v))
    } else {
        Err(Error::NumericOutOfRange(format!(
            "{} out of range",
            ty.sql_name()
        )))
    }
}

/// Coerce a value to a column's type, the way an INSERT into that column would.
pub fn coerce(value: Value, ty: &ColumnType) -> Result<Value> {
    let bad = |v: &Value| {
        Error::DatatypeMismatch(format!(
            "column is of type {} but expression is of type {}",
            ty.sql_name(),
            value_type_name(v)
        ))
    };
    Ok(match (ty, value) {
        (_, Value::Null) => Value::Null,
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, Value::Int(i)) => {
            int_in_range(i, ty)?
        }
        // An assignment cast, as Postgres makes of a float or numeric: rounded (half
        // away from zero, as a numeric literal is; a float8 would round half to even).
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, Value::Float(f)) => {
            let r = f.round();
            if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
                return Err(Error::NumericOutOfRange(format!(
                    "{} out of range",
                    ty.sql_name()
                )));
            }
            int_in_range(r as i64, ty)?
        }
        // ... and of a numeric: rounded half away from zero.
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, Value::Decimal(u, sc)) => {
            let whole = rescale(u, sc, 0).ok().and_then(|w| i64::try_from(w).ok());
            match whole {
                Some(w) => int_in_range(w, ty)?,
                None => {
                    return Err(Error::NumericOutOfRange(format!(
                        "{} out of range",
                        ty.sql_name()
                    )));
                }
            }
        }
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, Value::Text(s)) => {
            let i = s.trim().parse::<i64>().map_err(|_| {
                Error::InvalidText(format!(
                    "invalid input syntax for type {}: \"{}\"",
                    ty.sql_name(),
                    abbreviate(&s)
                ))
            })?;
            int_in_range(i, ty)?
        }
        (ColumnType::Real | ColumnType::Double, Value::Int(i)) => Value::Float(i as f64),
        (ColumnType::Real | ColumnType::Double, Value::Float(f)) => Value::Float(f),
        (ColumnType::Real | ColumnType::Double, Value::Text(s)) => {
            Value::Float(s.trim().parse::<f64>().map_err(|_| {
                Error::InvalidText(format!(
                    "invalid input syntax for type {}: \"{}\"",
                    ty.sql_name(),
                    abbreviate(&s)
                ))
            })?)
        }
        (ColumnType::Bool, Value::Bool(b)) => Value::Bool(b),
        (ColumnType::Bool, Value::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Value::Bool(true),
            "f" | "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => {
                return Err(Error::InvalidText(format!(
                    "invalid input syntax for type boolean: \"{s}\""
                )));
            }
        },
        (ColumnType::Text, Value::Text(s)) => Value::Text(s),
        (ColumnType::Text, Value::Int(i)) => Value::Text(i.to_string()),
        (ColumnType::Text, Value::Float(f)) => Value::Text(f.to_string()),
        (ColumnType::Text, Value::Bool(b)) => Value::Text(b.to_string()),
        (ColumnType::Text, Value::Uuid(u)) => Value::Text(u.to_string()),
        (ColumnType::Uuid, Value::Uuid(u)) => Value::Uuid(u),
        (ColumnType::Uuid, Value::Text(s)) => {
            Value::Uuid(uuid::Uuid::parse_str(s.trim()).map_err(|_| {
                Error::InvalidText(format!(
                    "invalid input syntax for type uuid: \"{}\"",
                    abbreviate(&s)
                ))
            })?)
        }
        (ColumnType::Timestamp | ColumnType::TimestampTz, Value::Timestamp(t)) => {
            Value::Timestamp(t)
        }
        (ColumnType::Timestamp | ColumnType::TimestampTz, Value::Text(s)) => {
            Value::Timestamp(parse_timestamp(&s)?)
        }
        (ColumnType::Timestamp | ColumnType::TimestampTz, Value::Date(d)) => {
            Value::Timestamp(d as i64 * 86_400_000_000)
        }
        (ColumnType::Date, Value::Date(d)) => Value::Date(d),
        (ColumnType::Date, Value::Text(s)) => Value::Date(parse_date(&s)?),
        (ColumnType::Date, Value::Timestamp(t)) => Value::Date(t.div_euclid(86_400_000_000) as i32),
        (ColumnType::TextArray, Value::TextArray(a)) => Value::TextArray(a),
        (ColumnType::TextArray, Value::IntArray(a)) => {
            Value::TextArray(a.into_iter().map(|x| x.map(|i| i.to_string())).collect())
        }
        (ColumnType::TextArray, Value::Text(s)) => Value::TextArray(parse_pg_array(&s)?),
        (ColumnType::IntArray | ColumnType::BigIntArray, Value::IntArray(a)) => Value::IntArray(a),
        (ColumnType::IntArray | ColumnType::BigIntArray, Value::Text(s)) => {
            let items = parse_pg_array(&s)?;
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(match it {
                    None => None,
                    Some(x) => Some(x.parse::<i64>().map_err(|_| {
                        Error::InvalidText(format!(
                            "invalid input syntax for type integer: \"{x}\""
                        ))
                    })?),
                });
            }
            Value::IntArray(out)
        }
        (
            ColumnType::Vector(n),
            v @ (Value::Vector(_) | Value::Text(_) | Value::IntArray(_) | Value::Array(_)),
        ) => {
            let v = vector_of(v)?;
            check_vector(&v, *n)?;
            Value::Vector(v)
        }
        (ColumnType::Bit(n), Value::Text(s)) => {
            let bits = parse_bits(&s)?;
            if bits.len() != *n {
                return Err(Error::StringDataLength(format!(
                    "bit string length {} does not match type bit({n})",
                    bits.len()
                )));
            }
            Value::Text(bits)
        }
        (ColumnType::VarBit(n), Value::Text(s)) => {
            let bits = parse_bits(&s)?;
            if *n > 0 && bits.len() > *n {
                return Err(Error::StringTruncation(format!(
                    "bit string too long for type bit varying({n})"
                )));
            }
            Value::Text(bits)
        }
        (ColumnType::SparseVec(n), Value::Text(s)) => {
            let s = crate::types::sparse::SparseVector::parse(&s)?;
            check_sparse_dim(&s, *n)?;
            Value::Text(s.text())
        }
        (
            ColumnType::SparseVec(n),
            v @ (Value::Vector(_) | Value::IntArray(_) | Value::Array(_)),
        ) => {
            let s = crate::types::sparse::SparseVector::from_dense(&vector_of(v)?)?;
            check_sparse_dim(&s, *n)?;
            Value::Text(s.text())
        }
        (
            ColumnType::HalfVec(n),
            v @ (Value::Vector(_) | Value::Text(_) | Value::IntArray(_) | Value::Array(_)),
        ) => {
            let v = to_half(vector_of(v)?)?;
            check_vector(&v, *n)?;
            Value::Vector(v)
        }
        (ColumnType::Bytea, Value::Bytes(b)) => Value::Bytes(b),
        (ColumnType::Bytea, Value::Text(s)) => Value::Bytes(parse_bytea(&s)?),
        (
            ColumnType::Numeric(p, sc),
            v @ (Value::Int(_) | Value::Float(_) | Value::Text(_) | Value::Decimal(..)),
        ) => {
            let unscaled = match v {
                Value::Int(i) => rescale(i as i128, 0, *sc)?,
                Value::Float(f) if f.is_finite() => parse_decimal(&format!("{f}"), *sc)?,
                Value::Float(_) => {
                    return Err(Error::FeatureNotSupported(
                        "NaN and infinity are not supported for numeric".into(),
                    ));
                }
                Value::Text(s) => parse_decimal(&s, *sc)?,
                Value::Decimal(u, from) => rescale(u, from, *sc)?,
                _ => 0,
            };
            if unscaled.unsigned_abs() >= 10u128.pow(*p as u32) {
                return Err(Error::NumericOutOfRange(format!(
                    "numeric field overflow: a field with precision {p}, scale {sc} must round to an absolute value less than 10^{}",
                    *p as i32 - *sc as i32
                )));
            }
            Value::Decimal(unscaled, *sc)
        }
        (ColumnType::Real | ColumnType::Double, Value::Decimal(u, sc)) => {
            Value::Float(format_decimal(u, sc).parse().unwrap_or(f64::NAN))
        }
        (ColumnType::Text, Value::Decimal(u, sc)) => Value::Text(format_decimal(u, sc)),
        (ColumnType::Jsonb, Value::Text(s)) => Value::Text(crate::json::jsonb_text(&s)?),
        (ColumnType::Json, Value::Text(s)) => {
            crate::json::check_json(&s)?;
            Value::Text(s)
        }
        (ColumnType::Array(e), Value::Text(s)) => Value::Array(
            parse_pg_array(&s)?
                .into_iter()
                .map(|x| coerce(x.map_or(Value::Null, Value::Text), e))
                .collect::<Result<_>>()?,
        ),
        (
            ColumnType::Array(e),
            v @ (Value::Array(_) | Value::Vector(_) | Value::IntArray(_) | Value::TextArray(_)),
        ) => Value::Array(
            elements(v)
                .into_iter()
                .map(|x| coerce(x, e))
                .collect::<Result<_>>()?,
        ),
        (ColumnType::TextArray, Value::Array(a)) => Value::TextArray(
            a.into_iter()
                .map(|x| match coerce(x, &ColumnType::Text)? {
                    Value::Text(t) => Ok(Some(t)),
                    _ => Ok(None),
                })
                .collect::<Result<_>>()?,
        ),
        (ColumnType::IntArray | ColumnType::BigIntArray, Value::Array(a))
            if a.iter().all(|x| {
                matches!(
                    x,
                    Value::Null | Value::Int(_) | Value::Float(_) | Value::Decimal(..)
                )
            }) =>
        {
            let int = if matches!(ty, ColumnType::IntArray) {
                ColumnType::Int
            } else {
                ColumnType::BigInt
            };
            Value::IntArray(
                a.into_iter()
                    .map(|x| match coerce(x, &int)? {
                        Value::Int(i) => Ok(Some(i)),
                        _ => Ok(None),
                    })
                    .collect::<Result<_>>()?,
            )
        }
        (_, v) => return Err(bad(&v)),
    })
}

pub(crate) fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "unknown",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "bigint",
        Value::Float(_) => "double precision",
        Value::Text(_) => "text",
        Value::Uuid(_) => "uuid",
        Value::Timestamp(_) => "timestamp",
        Value::Date(_) => "date",
        Value::TextArray(_) => "text[]",
        Value::IntArray(_) => "bigint[]",
        Value::Vector(_) => "vector",
        Value::Bytes(_) => "bytea",
        Value::Decimal(..) => "numeric",
        Value::Array(a) => match a.iter().find(|x| !x.is_null()) {
            Some(Value::Bool(_)) => "boolean[]",
            Some(Value::Int(_)) => "bigint[]",
            Some(Value::Float(_)) => "double precision[]",
            Some(Value::Uuid(_)) => "uuid[]",
            Some(Value::Timestamp(_)) => "timestamp[]",
            Some(Value::Date(_)) => "date[]",
            Some(Value::Bytes(_)) => "bytea[]",
            Some(Value::Decimal(..)) => "numeric[]",
            _ => "text[]",
        },
    }
}

/// The elements of an array value of any kind, each a scalar value.
pub fn elements(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Vector(v) => v.into_iter().map(|x| Value::Float(x as f64)).collect(),
        Value::IntArray(a) => a
            .into_iter()
            .map(|x| x.map_or(Value::Null, Value::Int))
            .collect(),
        Value::TextArray(a) => a
            .into_iter()
            .map(|x| x.map_or(Value::Null, Value::Text))
            .collect(),
        other => vec![other],
    }
}

/// Read one cell of an Arrow array as a `Value` (used for INSERT sources and key
/// lookups). Floats in lists become vectors; strings stay text until coerced.
pub fn value_from_array(array: &ArrayRef, row: usize) -> Result<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let a = array.as_any();
    macro_rules! get {
        ($t:ty) => {
            a.downcast_ref::<$t>().map(|x| x.value(row))
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => Value::Bool(get!(BooleanArray).unwrap_or_default()),
        DataType::Int8 => Value::Int(get!(Int8Array).unwrap_or_default() as i64),
        DataType::Int16 => Value::Int(get!(Int16Array).unwrap_or_default() as i64),
        DataType::Int32 => Value::Int(get!(Int32Array).unwrap_or_default() as i64),
        DataType::Int64 => Value::Int(get!(Int64Array).unwrap_or_default()),
        DataType::UInt32 => Value::Int(get!(UInt32Array).unwrap_or_default() as i64),
        DataType::UInt64 => Value::Int(get!(UInt64Array).unwrap_or_default() as i64),
        DataType::Float32 => Value::Float(get!(Float32Array).unwrap_or_default() as f64),
        DataType::Float64 => Value::Float(get!(Float64Array).unwrap_or_default()),
        DataType::Utf8 => Value::Text(get!(StringArray).unwrap_or_default().to_string()),
        DataType::LargeUtf8 => Value::Text(get!(LargeStringArray).unwrap_or_default().to_string()),
        DataType::Utf8View => Value::Text(get!(StringViewArray).unwrap_or_default().to_string()),
        DataType::Date32 => Value::Date(get!(Date32Array).unwrap_or_default()),
        DataType::Binary => Value::Bytes(get!(BinaryArray).map(|b| b.to_vec()).unwrap_or_default()),
        DataType::LargeBinary => Value::Bytes(
            get!(LargeBinaryArray)
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        ),
        DataType::Decimal128(_, s) => Value::Decimal(get!(Decimal128Array).unwrap_or_default(), *s),
        DataType::Timestamp(_, _) => {
            // Casts take the one row: casting the whole array for each row is quadratic.
            let casted = datafusion::arrow::compute::cast(
                &array.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )
            .map_err(Error::internal)?;
            Value::Timestamp(
                casted
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .map(|x| x.value(0))
                    .unwrap_or_default(),
            )
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            if let Some(v) = float32_list_at(array, row) {
                return v;
            }
            let array = &array.slice(row, 1);
            let row = 0;
            let textual = matches!(
                list_element_type(array.data_type()),
                Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
            );
            let list = if textual {
                datafusion::arrow::compute::cast(array, &list_of(DataType::Utf8)).ok()
            } else {
                None
            };
            if let Some(list) = list {
                let la = list
                    .as_any()
                    .downcast_ref::<ListArray>()
                    .ok_or_else(|| Error::internal("list"))?;
                let inner = la.value(row);
                let sa = inner
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| Error::internal("list"))?;
                Value::TextArray(
                    (0..sa.len())
                        .map(|i| (!sa.is_null(i)).then(|| sa.value(i).to_string()))
                        .collect(),
                )
            } else if matches!(
                list_element_type(array.data_type()),
                Some(DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64)
            ) {
                let list = datafusion::arrow::compute::cast(array, &list_of(DataType::Int64))
                    .map_err(Error::internal)?;
                let la = list
                    .as_any()
                    .downcast_ref::<ListArray>()
                    .ok_or_else(|| Error::internal("list"))?;
                let inner = la.value(row);
                let ia = inner
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| Error::internal("list"))?;
                Value::IntArray(
                    (0..ia.len())
                        .map(|i| (!ia.is_null(i)).then(|| ia.value(i)))
                        .collect(),
                )
            } else if matches!(
                list_element_type(array.data_type()),
                Some(
                    DataType::Float64
                        | DataType::Boolean
                        | DataType::Date32
                        | DataType::Timestamp(..)
                        | DataType::Decimal128(..)
                        | DataType::Binary
                        | DataType::LargeBinary
                )
            ) {
                // Each element as its scalar value is (a float8 keeps its precision).
                let inner = list_items(array, row).ok_or_else(|| Error::internal("list"))?;
                Value::Array(
                    (0..inner.len())
                        .map(|i| value_from_array(&inner, i))
                        .collect::<Result<_>>()?,
                )
            } else {
                let list = datafusion::arrow::compute::cast(array, &list_of(DataType::Float32))
                    .map_err(|e| Error::DatatypeMismatch(e.to_string()))?;
                let la = list
                    .as_any()
                    .downcast_ref::<ListArray>()
                    .ok_or_else(|| Error::internal("list"))?;
                let inner = la.value(row);
                let fa = inner
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .ok_or_else(|| Error::internal("list"))?;
                if fa.null_count() > 0 {
                    return Err(Error::DataException("array must not contain nulls".into()));
                }
                Value::Vector(fa.values().to_vec())
            }
        }
        DataType::Null => Value::Null,
        other => {
            return Err(Error::FeatureNotSupported(format!(
                "values of type {other} are not supported here"
            )));
        }
    })
}

/// A vector stored the usual way (a list of float4) read without a cast.
fn float32_list_at(array: &ArrayRef, row: usize) -> Option<Result<Value>> {
    let values = if let Some(l) = array.as_any().downcast_ref::<ListArray>() {
        l.value(row)
    } else if let Some(l) = array.as_any().downcast_ref::<FixedSizeListArray>() {
        l.value(row)
    } else {
        return None;
    };
    let floats = values.as_any().downcast_ref::<Float32Array>()?;
    Some(if floats.null_count() > 0 {
        Err(Error::DataException("array must not contain nulls".into()))
    } else {
        Ok(Value::Vector(floats.values().to_vec()))
    })
}

/// The items of the list at `row` of `array`, if it is a list.
fn list_items(array: &ArrayRef, row: usize) -> Option<ArrayRef> {
    use datafusion::arrow::array::AsArray;
    Some(match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(row),
        _ => return None,
    })
}

fn list_element_type(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    }
}

/// Build one Arrow column of `ty` from values (already coerced to that type).
pub fn build_array<'a>(ty: &ColumnType, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    match ty {
        ColumnType::SmallInt => {
            let mut b = Int16Builder::new();
            for v in values {
                match v {
                    Value::Int(i) => b.append_value(*i as i16),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Int => {
            let mut b = Int32Builder::new();
            for v in values {
                match v {
                    Value::Int(i) => b.append_value(*i as i32),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::BigInt => {
            let mut b = Int64Builder::new();
            for v in values {
                match v {
                    Value::Int(i) => b.append_value(*i),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Real => {
            let mut b = Float32Builder::new();
            for v in values {
                match v {
                    Value::Float(f) => b.append_value(*f as f32),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Double => {
            let mut b = Float64Builder::new();
            for v in values {
                match v {
                    Value::Float(f) => b.append_value(*f),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Bool => {
            let mut b = BooleanBuilder::new();
            for v in values {
                match v {
                    Value::Bool(x) => b.append_value(*x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Text | ColumnType::Uuid => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Text(s) => b.append_value(s),
                    Value::Uuid(u) => b.append_value(u.to_string()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            let mut b = TimestampMicrosecondBuilder::new();
            for v in values {
                match v {
                    Value::Timestamp(t) => b.append_value(*t),
                    _ => b.append_null(),
                }
            }
            let a = b.finish();
            if matches!(ty, ColumnType::TimestampTz) {
                Arc::new(a.with_timezone("UTC"))
            } else {
                Arc::new(a)
            }
        }
        ColumnType::Date => {
            let mut b = Date32Builder::new();
            for v in values {
                match v {
                    Value::Date(d) => b.append_value(*d),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::TextArray => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in values {
                match v {
                    Value::TextArray(items) => {
                        for it in items {
                            b.values().append_option(it.as_deref());
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::IntArray => {
            let mut b = ListBuilder::new(Int32Builder::new());
            for v in values {
                match v {
                    Value::IntArray(items) => {
                        for it in items {
                            b.values().append_option(it.map(|i| i as i32));
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::BigIntArray => {
            let mut b = ListBuilder::new(Int64Builder::new());
            for v in values {
                match v {
                    Value::IntArray(items) => {
                        for it in items {
                            b.values().append_option(*it);
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Bytea => {
            let mut b = BinaryBuilder::new();
            for v in values {
                match v {
                    Value::Bytes(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Numeric(p, s) => {
            let mut b = Decimal128Builder::new();
            for v in values {
                match v {
                    Value::Decimal(u, _) => b.append_value(*u),
                    _ => b.append_null(),
                }
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .unwrap_or_else(|_| Decimal128Array::from(Vec::<i128>::new())),
            )
        }
        ColumnType::Array(e) => {
            // The elements of every row in one column of the element type, then the
            // rows as slices of it.
            let mut offsets = vec![0i32];
            let mut nulls = Vec::new();
            let mut items: Vec<&Value> = Vec::new();
            for v in values {
                match v {
                    Value::Array(a) => {
                        items.extend(a.iter());
                        nulls.push(true);
                    }
                    _ => nulls.push(false),
                }
                offsets.push(items.len() as i32);
            }
            let child = build_array(e, items.into_iter());
            let field = Arc::new(Field::new_list_field(e.arrow_type(), true));
            Arc::new(ListArray::new(
                field,
                datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
                child,
                Some(nulls.into()),
            ))
        }
        ColumnType::Jsonb
        | ColumnType::Json
        | ColumnType::SparseVec(_)
        | ColumnType::Bit(_)
        | ColumnType::VarBit(_) => build_array(&ColumnType::Text, values),
        ColumnType::Vector(_) | ColumnType::HalfVec(_) => {
            let mut b = ListBuilder::new(Float32Builder::new());
            for v in values {
                match v {
                    Value::Vector(items) => {
                        b.values().append_slice(items);
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_text_forms() {
        assert_eq!(
            parse_vector_text("[1, 2.5,-3]").ok(),
            Some(vec![1.0, 2.5, -3.0])
        );
        assert_eq!(parse_vector_text("{1,2}").ok(), Some(vec![1.0, 2.0]));
        assert!(matches!(
            parse_vector_text("[1,x]"),
            Err(Error::InvalidText(_))
        ));
        assert!(matches!(
            parse_vector_text("1,2"),
            Err(Error::InvalidText(_))
        ));
        assert!(matches!(
            check_vector(&[f32::NAN], 1),
            Err(Error::DataException(_))
        ));
        assert!(matches!(
            check_vector(&[1.0], 2),
            Err(Error::DataException(_))
        ));
    }

    #[test]
    fn pg_arrays() {
        assert_eq!(
            parse_pg_array(r#"{a, "b c",NULL,"NULL"}"#).ok(),
            Some(vec![
                Some("a".into()),
                Some("b c".into()),
                None,
                Some("NULL".into())
            ])
        );
        assert_eq!(parse_pg_array("{}").ok(), Some(vec![]));
        assert!(parse_pg_array("a,b").is_err());
        // A backslash escapes outside quotes too (`{\\x01}` is the bytea `\x01`).
        assert_eq!(
            parse_pg_array(r#"{\\x01, a\,b ,\NULL}"#).ok(),
            Some(vec![
                Some("\\x01".into()),
                Some("a,b".into()),
                Some("NULL".into())
            ])
        );
    }

    #[test]
    fn array_text_reads_back_as_the_same_values() {
        for (ty, text) in [
            (
                ColumnType::Double,
                "{0.1,NULL,-2.5e-300,0.3333333333333333}",
            ),
            (ColumnType::Real, "{1.5,0.1}"),
            (
                ColumnType::TimestampTz,
                "{\"2024-01-02 03:04:05.123456+00\"}",
            ),
            (ColumnType::Date, "{1969-12-31}"),
            (ColumnType::Numeric(6, 2), "{1.26,-3}"),
            (ColumnType::Bytea, "{\"\\\\x0aff\",\"\\\\x\"}"),
            (ColumnType::Jsonb, r#"{"{\"a\": [1, \"b c\"]}"}"#),
            (ColumnType::Uuid, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
            (ColumnType::Bool, "{t,f,NULL}"),
        ] {
            let array = ColumnType::Array(Box::new(ty.clone()));
            let Ok(Value::Array(items)) = coerce(Value::Text(text.into()), &array) else {
                panic!("{text} is not a {}", array.sql_name());
            };
            let again = coerce(Value::Text(array_value_text(&items, &ty)), &array).ok();
            assert_eq!(again, Some(Value::Array(items)), "{text}");
        }
    }

    #[test]
    fn decimals_and_bytes() {
        assert_eq!(parse_decimal("-12.345", 2).ok(), Some(-1235));
        assert_eq!(parse_decimal("7", 3).ok(), Some(7000));
        assert_eq!(format_decimal(-1235, 2), "-12.35");
        assert_eq!(format_decimal(5, 3), "0.005");
        assert!(parse_decimal("1e5", 2).is_err());
        assert!(matches!(
            coerce(Value::Text("123.4".into()), &ColumnType::Numeric(4, 2)),
            Err(Error::NumericOutOfRange(_))
        ));
        assert_eq!(
            coerce(Value::Int(3), &ColumnType::Numeric(10, 2)).ok(),
            Some(Value::Decimal(300, 2))
        );
        assert_eq!(parse_bytea("\\x00ff").ok(), Some(vec![0, 255]));
        assert_eq!(format_bytea(&[0, 255]), "\\x00ff");
        assert_eq!(
            coerce(Value::Text("{bad".into()), &ColumnType::Jsonb)
                .err()
                .map(|e| e.sqlstate()),
            Some("22P02")
        );
    }

    #[test]
    fn int_ranges_are_checked() {
        assert!(matches!(
            coerce(Value::Int(1 << 40), &ColumnType::Int),
            Err(Error::NumericOutOfRange(_))
        ));
        assert_eq!(
            coerce(Value::Text("42".into()), &ColumnType::BigInt).ok(),
            Some(Value::Int(42))
        );
    }
}
