//! Decoding bound parameter values, in text or binary format, into [`Value`]s.

use bytes::Bytes;
use datafusion::arrow::datatypes::Field;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::results::FieldFormat;
use postgres_types::FromSql;

use super::Prepared;
use crate::error::{Error, Result};
use crate::types::Value;

/// OID the proxy reports for pgvector's `vector` type.
pub const VECTOR_OID: u32 = 16385;

/// The type reported in ParameterDescription for an inferred parameter.
pub fn pg_param_type(t: Option<&Field>) -> Type {
    match t {
        None => Type::TEXT,
        // arrow-pg reports lists by element type only; an array of oids is oid[].
        Some(f)
            if matches!(f.data_type(), datafusion::arrow::datatypes::DataType::List(e)
                if e.metadata().get(arrow_pg::datatypes::PG_OID_ALIAS_KEY).map(String::as_str) == Some("oid")) =>
        {
            Type::OID_ARRAY
        }
        Some(f)
            if f.metadata()
                .get(crate::types::PG_TYPE_KEY)
                .map(String::as_str)
                == Some(crate::types::HALFVEC) =>
        {
            super::encode::halfvec_type()
        }
        Some(f)
            if f.metadata()
                .get(crate::types::PG_TYPE_KEY)
                .map(String::as_str)
                == Some(crate::types::SPARSEVEC) =>
        {
            super::encode::pgvector_type(
                crate::types::SPARSEVEC,
                crate::sql::catalog::SPARSEVEC_OID,
            )
        }
        Some(f) if crate::json::kind_of(f) == Some(crate::json::Kind::Jsonb) => Type::JSONB,
        Some(f) if crate::json::kind_of(f) == Some(crate::json::Kind::Json) => Type::JSON,
        Some(f) => arrow_pg::datatypes::field_into_pg_type(&std::sync::Arc::new(f.clone()))
            .unwrap_or(Type::TEXT),
    }
}

fn bad(ty: &Type, what: &str) -> Error {
    Error::InvalidText(format!(
        "invalid input syntax for type {}: \"{what}\"",
        ty.name()
    ))
}

fn from_binary<'a, T: FromSql<'a>>(ty: &Type, raw: &'a [u8]) -> Result<T> {
    T::from_sql(ty, raw).map_err(|_| {
        Error::ProtocolViolation(format!(
            "incorrect binary data format in bind parameter of type {}",
            ty.name()
        ))
    })
}

fn decode_text(ty: &Type, raw: &[u8]) -> Result<Value> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| Error::InvalidText("invalid UTF-8 in parameter".into()))?;
    Ok(match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            Value::Int(s.trim().parse().map_err(|_| bad(ty, s))?)
        }
        Type::FLOAT4 | Type::FLOAT8 => {
            let t = s.trim();
            Value::Float(match t.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "infinity" => f64::INFINITY,
                "-infinity" => f64::NEG_INFINITY,
                _ => t.parse().map_err(|_| bad(ty, s))?,
            })
        }
        Type::BOOL => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "1" => Value::Bool(true),
            "f" | "false" | "off" | "no" | "0" => Value::Bool(false),
            _ => return Err(bad(ty, s)),
        },
        // `{1,2,3}` (psycopg sends a list of floats this way): the same value as the
        // array's binary form.
        Type::FLOAT4_ARRAY | Type::FLOAT8_ARRAY | Type::NUMERIC_ARRAY => {
            Value::Vector(crate::types::parse_vector_text(s)?)
        }
        _ => Value::Text(s.to_string()),
    })
}

/// pgvector's binary form: u16 dimension, u16 unused, then big-endian f32s.
fn decode_vector(raw: &[u8]) -> Result<Value> {
    if raw.len() < 4 || raw.len() != 4 + 4 * u16::from_be_bytes([raw[0], raw[1]]) as usize {
        return Err(Error::ProtocolViolation("malformed binary vector".into()));
    }
    Ok(Value::Vector(
        raw[4..]
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

/// pgvector's binary halfvec: u16 dimension, u16 unused, then big-endian binary16s.
fn decode_halfvec(raw: &[u8]) -> Result<Value> {
    if !looks_like_halfvec(raw) {
        return Err(Error::ProtocolViolation("malformed binary halfvec".into()));
    }
    Ok(Value::Vector(
        raw[4..]
            .chunks_exact(2)
            .map(|c| half::f16::from_be_bytes([c[0], c[1]]).to_f32())
            .collect(),
    ))
}

fn looks_like_halfvec(raw: &[u8]) -> bool {
    raw.len() >= 6
        && raw[2] == 0
        && raw[3] == 0
        && raw.len() == 4 + 2 * u16::from_be_bytes([raw[0], raw[1]]) as usize
}

/// Postgres' binary numeric as decimal text: i16 digit count, i16 weight (of the first
/// base-10000 digit), u16 sign (0x4000 negative, 0xC000 NaN), u16 display scale, then
/// the base-10000 digits.
fn numeric_text(raw: &[u8]) -> Result<String> {
    let bad = || Error::ProtocolViolation("malformed binary numeric".into());
    let word = |i: usize| -> Result<u16> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(bad)
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    if raw.len() != 8 + 2 * ndigits {
        return Err(bad());
    }
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Result<_>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err(bad());
    }
    // The base-10000 digit at power `p` (digit i has power weight - i).
    let at = |p: i64| -> u16 {
        let i = weight - p;
        if i >= 0 && (i as usize) < ndigits {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut int = String::new();
    for p in (0..=weight.max(0)).rev() {
        if int.is_empty() {
            if at(p) != 0 {
                int.push_str(&at(p).to_string());
            }
        } else {
            int.push_str(&format!("{:04}", at(p)));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut p = -1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", at(p)));
        p -= 1;
    }
    frac.truncate(dscale);
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    out.push_str(&int);
    if dscale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

fn decode_binary(ty: &Type, raw: &[u8]) -> Result<Value> {
    if ty.oid() == VECTOR_OID {
        return decode_vector(raw);
    }
    if ty.oid() == crate::sql::catalog::HALFVEC_OID as u32 {
        return decode_halfvec(raw);
    }
    if *ty == Type::BIT || *ty == Type::VARBIT {
        return Ok(Value::Text(crate::types::bits_from_binary(raw)?));
    }
    if ty.oid() == crate::sql::catalog::SPARSEVEC_OID as u32 {
        return Ok(Value::Text(
            crate::types::sparse::SparseVector::from_binary(raw)?.text(),
        ));
    }
    Ok(match *ty {
        Type::INT2 => Value::Int(from_binary::<i16>(ty, raw)? as i64),
        Type::INT4 => Value::Int(from_binary::<i32>(ty, raw)? as i64),
        Type::INT8 => Value::Int(from_binary::<i64>(ty, raw)?),
        Type::OID => Value::Int(from_binary::<u32>(ty, raw)? as i64),
        Type::FLOAT4 => Value::Float(from_binary::<f32>(ty, raw)? as f64),
        Type::FLOAT8 => Value::Float(from_binary::<f64>(ty, raw)?),
        Type::BOOL => Value::Bool(from_binary::<bool>(ty, raw)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            Value::Text(from_binary::<String>(ty, raw)?)
        }
        // jsonb's binary form is a version byte (1) and the JSON text.
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => Value::Text(
                String::from_utf8(rest.to_vec())
                    .map_err(|_| Error::InvalidText("invalid UTF-8 in jsonb".into()))?,
            ),
            _ => {
                return Err(Error::ProtocolViolation(
                    "unsupported jsonb binary version".into(),
                ));
            }
        },
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        // As its text: the column's type decides what it becomes (pgjdbc binds
        // BigDecimal this way).
        Type::NUMERIC => Value::Text(numeric_text(raw)?),
        Type::UUID => Value::Uuid(from_binary::<uuid::Uuid>(ty, raw)?),
        Type::TIMESTAMP => Value::Timestamp(
            from_binary::<chrono::NaiveDateTime>(ty, raw)?
                .and_utc()
                .timestamp_micros(),
        ),
        Type::TIMESTAMPTZ => Value::Timestamp(
            from_binary::<chrono::DateTime<chrono::Utc>>(ty, raw)?.timestamp_micros(),
        ),
        Type::DATE => {
            let d = from_binary::<chrono::NaiveDate>(ty, raw)?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            Value::Date((d - epoch).num_days() as i32)
        }
        Type::FLOAT4_ARRAY => Value::Vector(
            from_binary::<Vec<Option<f32>>>(ty, raw)?
                .into_iter()
                .map(|x| {
                    x.ok_or_else(|| Error::DataException("array must not contain nulls".into()))
                })
                .collect::<Result<_>>()?,
        ),
        Type::FLOAT8_ARRAY | Type::NUMERIC_ARRAY => Value::Vector(
            from_binary::<Vec<Option<f64>>>(ty, raw)?
                .into_iter()
                .map(|x| {
                    x.map(|f| f as f32)
                        .ok_or_else(|| Error::DataException("array must not contain nulls".into()))
                })
                .collect::<Result<_>>()?,
        ),
        Type::INT4_ARRAY => Value::IntArray(
            from_binary::<Vec<Option<i32>>>(ty, raw)?
                .into_iter()
                .map(|x| x.map(i64::from))
                .collect(),
        ),
        Type::INT8_ARRAY => Value::IntArray(from_binary::<Vec<Option<i64>>>(ty, raw)?),
        Type::OID_ARRAY => Value::IntArray(
            from_binary::<Vec<Option<u32>>>(ty, raw)?
                .into_iter()
                .map(|x| x.map(i64::from))
                .collect(),
        ),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            Value::TextArray(from_binary::<Vec<Option<String>>>(ty, raw)?)
        }
        // `{t,f,NULL}`, as its text form arrives (a `$n::bool[]` binds it as an ARRAY).
        Type::BOOL_ARRAY => {
            let items: Vec<&str> = from_binary::<Vec<Option<bool>>>(ty, raw)?
                .into_iter()
                .map(|b| match b {
                    Some(true) => "t",
                    Some(false) => "f",
                    None => "NULL",
                })
                .collect();
            Value::Text(format!("{{{}}}", items.join(",")))
        }
        _ => {
            return Err(Error::FeatureNotSupported(format!(
                "binary parameters of type {} are not supported; send them as text",
                ty.name()
            )));
        }
    })
}

/// pgvector's binary layout: a u16 dimension, a zero u16, then that many f32s. (An
/// array's binary form starts with its dimension count, 1, and text holds no zero
/// bytes, so neither matches.)
fn looks_like_pgvector(raw: &[u8]) -> bool {
    raw.len() >= 8
        && raw[2] == 0
        && raw[3] == 0
        && raw.len() == 4 + 4 * u16::from_be_bytes([raw[0], raw[1]]) as usize
}

/// Decode every parameter of a portal. The type is the one the client declared at
/// Parse, else the one the server inferred.
pub fn decode(portal: &Portal<Prepared>) -> Result<Vec<Value>> {
    let prepared = &portal.statement.statement;
    let declared = &portal.statement.parameter_types;
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, raw): (usize, &Option<Bytes>)| {
            let Some(raw) = raw else {
                return Ok(Value::Null);
            };
            let ty = declared
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| {
                    *t != Type::UNKNOWN
                        || portal.parameter_format.format_for(i) == FieldFormat::Text
                })
                .unwrap_or_else(|| {
                    pg_param_type(prepared.described.params.get(i).and_then(|t| t.as_ref()))
                });
            let undeclared = declared.get(i).cloned().flatten().is_none();
            match portal.parameter_format.format_for(i) {
                FieldFormat::Text => decode_text(&ty, raw),
                // A type pgwire does not know by OID (pgvector's `vector`, whose OID a
                // driver learnt from pg_type) arrives undeclared: recognise its layout.
                FieldFormat::Binary
                    if undeclared
                        && (ty == Type::FLOAT4_ARRAY || ty == Type::TEXT)
                        && looks_like_pgvector(raw) =>
                {
                    decode_vector(raw)
                }
                FieldFormat::Binary
                    if undeclared
                        && (ty == Type::FLOAT4_ARRAY || ty == Type::TEXT)
                        && looks_like_halfvec(raw) =>
                {
                    decode_halfvec(raw)
                }
                FieldFormat::Binary => decode_binary(&ty, raw),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_numerics_read_as_their_text() {
        // 1234.50: digits 1234, 5000; weight 0; scale 2.
        let raw = [0, 2, 0, 0, 0, 0, 0, 2, 4, 210, 19, 136];
        assert_eq!(super::numeric_text(&raw).expect("numeric"), "1234.50");
        // -0.0012: one digit 12 at weight -1, scale 4.
        let raw = [0, 1, 255, 255, 64, 0, 0, 4, 0, 12];
        assert_eq!(super::numeric_text(&raw).expect("numeric"), "-0.0012");
        // 10000000: digit 1000 at weight 1, scale 0.
        let raw = [0, 1, 0, 1, 0, 0, 0, 0, 3, 232];
        assert_eq!(super::numeric_text(&raw).expect("numeric"), "10000000");
        // zero
        assert_eq!(
            super::numeric_text(&[0, 0, 0, 0, 0, 0, 0, 0]).expect("numeric"),
            "0"
        );
        assert!(super::numeric_text(&[0, 1, 0, 0]).is_err());
    }
}
