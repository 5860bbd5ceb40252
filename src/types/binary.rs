//! Postgres' binary formats of the types the proxy stores, read into [`Value`]s: bound
//! parameters in binary and `COPY ... FROM STDIN (FORMAT binary)` both come this way.

use postgres_types::{FromSql, Type};

use super::{HALFVEC_OID, SPARSEVEC_OID, VECTOR_OID, Value};
use crate::error::{Error, Result};

/// A value of the type with this OID, in binary: pgvector's types by their OIDs here,
/// the rest as Postgres' built-in types.
pub fn decode_oid(oid: u32, raw: &[u8]) -> Result<Value> {
    match Type::from_oid(oid) {
        Some(ty) => decode(&ty, raw),
        None if oid == VECTOR_OID as u32 => decode_vector(raw),
        None if oid == HALFVEC_OID as u32 => decode_halfvec(raw),
        None if oid == SPARSEVEC_OID as u32 => Ok(Value::Text(
            super::sparse::SparseVector::from_binary(raw)?.text(),
        )),
        None => Err(Error::FeatureNotSupported(format!(
            "binary values of type {oid} are not supported; send them as text"
        ))),
    }
}

pub fn decode(ty: &Type, raw: &[u8]) -> Result<Value> {
    if ty.oid() == VECTOR_OID as u32 {
        return decode_vector(raw);
    }
    if ty.oid() == HALFVEC_OID as u32 {
        return decode_halfvec(raw);
    }
    if *ty == Type::BIT || *ty == Type::VARBIT {
        return Ok(Value::Text(super::bits_from_binary(raw)?));
    }
    if ty.oid() == SPARSEVEC_OID as u32 {
        return Ok(Value::Text(
            super::sparse::SparseVector::from_binary(raw)?.text(),
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
        // A real[] without NULLs is taken as the vector it usually is (decoded once: a
        // search's query vector comes this way).
        Type::FLOAT4_ARRAY => {
            let items = from_binary::<Vec<Option<f32>>>(ty, raw)?;
            if items.iter().all(Option::is_some) {
                Value::Vector(items.into_iter().flatten().collect())
            } else {
                Value::Array(
                    items
                        .into_iter()
                        .map(|x| x.map_or(Value::Null, |f| Value::Float(f64::from(f))))
                        .collect(),
                )
            }
        }
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
        _ if matches!(ty.kind(), postgres_types::Kind::Array(_)) => array(ty, raw)?,
        _ => {
            return Err(Error::FeatureNotSupported(format!(
                "binary parameters of type {} are not supported; send them as text",
                ty.name()
            )));
        }
    })
}

/// A one-dimensional array in binary (dimension count, NULL flag, element type, the
/// dimension's length and lower bound, then each element's length and bytes), each
/// element decoded as its type is.
fn array(ty: &Type, raw: &[u8]) -> Result<Value> {
    let bad = || {
        Error::ProtocolViolation(format!(
            "incorrect binary data format in bind parameter of type {}",
            ty.name()
        ))
    };
    let postgres_types::Kind::Array(element) = ty.kind() else {
        return Err(bad());
    };
    let mut at = 0usize;
    let int = |at: &mut usize| -> Result<i32> {
        let b = raw.get(*at..*at + 4).ok_or_else(bad)?;
        *at += 4;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let dims = int(&mut at)?;
    let _has_nulls = int(&mut at)?;
    let _element_oid = int(&mut at)?;
    let len = match dims {
        0 => 0,
        1 => {
            let n = int(&mut at)?;
            let _lower_bound = int(&mut at)?;
            usize::try_from(n).map_err(|_| bad())?
        }
        _ => {
            return Err(Error::FeatureNotSupported(
                "multidimensional arrays are not supported".into(),
            ));
        }
    };
    let mut out = Vec::with_capacity(len.min(raw.len() / 4));
    for _ in 0..len {
        let n = int(&mut at)?;
        if n < 0 {
            out.push(Value::Null);
            continue;
        }
        let bytes = raw.get(at..at + n as usize).ok_or_else(bad)?;
        at += n as usize;
        out.push(decode(element, bytes)?);
    }
    if at != raw.len() {
        return Err(bad());
    }
    Ok(Value::Array(out))
}

/// pgvector's binary form: u16 dimension, u16 unused, then big-endian f32s.
pub fn decode_vector(raw: &[u8]) -> Result<Value> {
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
pub fn decode_halfvec(raw: &[u8]) -> Result<Value> {
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

pub fn looks_like_halfvec(raw: &[u8]) -> bool {
    raw.len() >= 6
        && raw[2] == 0
        && raw[3] == 0
        && raw.len() == 4 + 2 * u16::from_be_bytes([raw[0], raw[1]]) as usize
}

fn from_binary<'a, T: FromSql<'a>>(ty: &Type, raw: &'a [u8]) -> Result<T> {
    T::from_sql(ty, raw).map_err(|_| {
        Error::ProtocolViolation(format!(
            "incorrect binary data format in bind parameter of type {}",
            ty.name()
        ))
    })
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
