//! Decoding bound parameter values, in text or binary format, into [`Value`]s.

use bytes::Bytes;
use datafusion::arrow::datatypes::Field;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::results::FieldFormat;

use super::Prepared;
use crate::error::{Error, Result};
use crate::types::Value;
use crate::types::binary::{
    decode as decode_binary, decode_halfvec, decode_vector, looks_like_halfvec,
};

/// OID the proxy reports for pgvector's `vector` type.
pub const VECTOR_OID: u32 = crate::types::VECTOR_OID as u32;

/// The type reported in ParameterDescription for an inferred parameter.
pub fn pg_param_type(t: Option<&Field>) -> Type {
    // Arrays of types kept as text, by their mark (`uuid[]`, `jsonb[]`, `json[]`).
    if let Some(array) = t.and_then(super::arrays::column_type) {
        return array;
    }
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
        // Any of uuid's text forms (psycopg sends 32 hex digits), as its value.
        Type::UUID => Value::Uuid(uuid::Uuid::parse_str(s.trim()).map_err(|_| bad(ty, s))?),
        Type::BOOL => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "1" => Value::Bool(true),
            "f" | "false" | "off" | "no" | "0" => Value::Bool(false),
            _ => return Err(bad(ty, s)),
        },
        // `{1,2,3}` (psycopg sends a list of floats this way): the same value as the
        // array's binary form (a real[] without NULLs is the vector it usually is; a
        // float8[] keeps its precision; numeric elements stay text for the column).
        Type::FLOAT4_ARRAY if !s.to_ascii_lowercase().contains("null") => {
            Value::Vector(crate::types::parse_vector_text(s)?)
        }
        Type::FLOAT4_ARRAY | Type::FLOAT8_ARRAY | Type::NUMERIC_ARRAY => Value::Array(
            crate::types::parse_pg_array(s)?
                .into_iter()
                .map(|item| match item {
                    None => Ok(Value::Null),
                    Some(x) if *ty == Type::NUMERIC_ARRAY => Ok(Value::Text(x)),
                    Some(x) => decode_text(&Type::FLOAT8, x.as_bytes()),
                })
                .collect::<Result<_>>()?,
        ),
        // Any other array (`{a,"b c",NULL}` of a `uuid[]`, `text[]`, `date[]` ...): its
        // elements, each read as its type's text (a multidimensional one stays text).
        _ if !s.trim_start().starts_with("{{")
            && let postgres_types::Kind::Array(element) = ty.kind()
            && let Ok(items) = crate::types::parse_pg_array(s) =>
        {
            let values = items
                .into_iter()
                .map(|x| match x {
                    None => Ok(Value::Null),
                    Some(x) => decode_text(element, x.as_bytes()),
                })
                .collect::<Result<Vec<_>>>()?;
            match *element {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Value::TextArray(
                    values
                        .into_iter()
                        .map(|v| match v {
                            Value::Text(t) => Some(t),
                            _ => None,
                        })
                        .collect(),
                ),
                Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Value::IntArray(
                    values
                        .into_iter()
                        .map(|v| match v {
                            Value::Int(i) => Some(i),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => Value::Array(values),
            }
        }
        _ => Value::Text(s.to_string()),
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
