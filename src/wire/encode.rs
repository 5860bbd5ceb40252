//! Results to the wire: Arrow batches become DataRows through arrow-pg's encoder (the
//! one place that knows type OIDs and binary formats); command tags and errors are
//! shaped here.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use super::error_info;
use crate::error::{Error, Result};
use crate::sql::Output;

/// The vector marker survives casts (`embedding::text`), but a column is a vector only
/// while it is a list of floats: the schema without the marker on other columns, if any
/// had it.
fn without_stale_vector_marks(schema: &Schema) -> Option<Arc<Schema>> {
    use datafusion::arrow::datatypes::DataType;
    let stale = |f: &datafusion::arrow::datatypes::Field| {
        f.metadata().contains_key(crate::types::PG_VECTOR_KEY)
            && !matches!(
                f.data_type(),
                DataType::List(_) | DataType::FixedSizeList(..)
            )
    };
    if !schema.fields().iter().any(|f| stale(f)) {
        return None;
    }
    let fields: Vec<datafusion::arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| {
            if stale(f) {
                let mut m = f.metadata().clone();
                m.remove(crate::types::PG_VECTOR_KEY);
                Arc::new(f.as_ref().clone().with_metadata(m))
            } else {
                f.clone()
            }
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    use datafusion::arrow::datatypes::DataType;
    let cleaned = without_stale_vector_marks(schema);
    let schema = cleaned.as_deref().unwrap_or(schema);
    // Arrays of arrays: typed here, as the encoder has no type for them.
    let nested = super::arrays::columns(schema, format);
    let mut out = if nested.is_empty() {
        arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)?
    } else {
        let encoded = super::arrays::encoded_schema(schema, &nested);
        arrow_pg::datatypes::arrow_schema_to_pg_fields(&encoded, format, None)?
    };
    for (info, field) in out.iter_mut().zip(schema.fields()) {
        let name = crate::sql::colnames::wire_name(info.name());
        if name.len() != info.name().len() {
            *info = FieldInfo::new(
                name.to_string(),
                info.table_id(),
                info.column_id(),
                info.datatype().clone(),
                info.format(),
            )
            .with_format_options(info.format_options().clone());
        }
        let pg_type = field
            .metadata()
            .get(crate::types::PG_TYPE_KEY)
            .map(String::as_str);
        let retype = if let Some(t) = super::arrays::column_type(field) {
            Some(t)
        } else if matches!(pg_type, Some(crate::types::BIT | crate::types::VARBIT))
            && matches!(field.data_type(), DataType::Utf8)
        {
            // `0`s and `1`s; in binary made from them (`Fix::BitBinary`).
            Some(if pg_type == Some(crate::types::BIT) {
                pgwire::api::Type::BIT
            } else {
                pgwire::api::Type::VARBIT
            })
        } else if pg_type == Some(crate::types::SPARSEVEC)
            && matches!(field.data_type(), DataType::Utf8)
        {
            // Its text; in binary made from the text (`Fix::SparsevecBinary`).
            Some(pgvector_type(
                crate::types::SPARSEVEC,
                crate::sql::catalog::SPARSEVEC_OID,
            ))
        } else if pg_type == Some(crate::types::HALFVEC)
            && matches!(
                field.data_type(),
                DataType::List(_) | DataType::FixedSizeList(..)
            )
        {
            // Encoded as a vector, its binary cells then rewritten (`Fix::HalfvecBinary`).
            Some(halfvec_type())
        } else if pg_type == Some("oid[]")
            && matches!(field.data_type(), DataType::List(e) if e.data_type() == &DataType::Int32)
        {
            Some(pgwire::api::Type::OID_ARRAY)
        } else if field.metadata().contains_key(crate::types::PG_UUID_KEY)
            && matches!(field.data_type(), DataType::Utf8)
        {
            // A uuid column, kept as text: announced as `uuid` (its binary form is made
            // from the text by `fix_cells`).
            Some(pgwire::api::Type::UUID)
        } else if crate::json::kind_of(field) == Some(crate::json::Kind::Jsonb) {
            // jsonb, kept as its text (binary: the text after a version byte).
            Some(pgwire::api::Type::JSONB)
        } else if crate::json::kind_of(field) == Some(crate::json::Kind::Json) {
            Some(pgwire::api::Type::JSON)
        } else if pg_type == Some("int2[]") && matches!(field.data_type(), DataType::Utf8) {
            // `{1,2}` text: announced as the `int2[]` it is in Postgres (its binary form
            // is made from the text by `fix_cells`).
            Some(pgwire::api::Type::INT2_ARRAY)
        } else if field
            .metadata()
            .contains_key(arrow_pg::datatypes::PG_OID_ALIAS_KEY)
            && matches!(field.data_type(), DataType::Int32 | DataType::UInt32)
        {
            // The catalog emulation marks its oid columns `regtype`, `regclass`, ... for
            // its own comparisons; their values are numbers, the `oid` Postgres has
            // (`pg_attribute.atttypid` is an `oid` there), and clients decode them so.
            Some(pgwire::api::Type::OID)
        } else if field
            .metadata()
            .contains_key(arrow_pg::datatypes::PG_OID_ALIAS_KEY)
        {
            // The oid marker survives casts (`typelem::regtype::text`, `oid::bigint`): a
            // text or bigint column is one, whatever column it came from. (A cast to
            // `int` plans as the `oid` it came from, so it is announced as one.)
            Some(arrow_pg::datatypes::into_pg_type(field.data_type())?)
        } else {
            None
        };
        if let Some(ty) = retype {
            *info = FieldInfo::new(
                info.name().to_string(),
                info.table_id(),
                info.column_id(),
                ty,
                info.format(),
            )
            .with_format_options(info.format_options().clone());
        }
        if pg_type == Some(crate::types::VARCHAR) && matches!(field.data_type(), DataType::Utf8) {
            // A varchar(n) column: its text, announced as Postgres describes the column.
            let typmod = field
                .metadata()
                .get(crate::types::PG_TYPMOD_KEY)
                .and_then(|t| t.parse().ok())
                .unwrap_or(-1);
            *info = FieldInfo::new(
                info.name().to_string(),
                info.table_id(),
                info.column_id(),
                pgwire::api::Type::VARCHAR,
                info.format(),
            )
            .with_format_options(info.format_options().clone())
            .with_type_modifier(typmod);
        }
    }
    Ok(out)
}

/// One of pgvector's types, at the oid the catalog gives it.
pub fn pgvector_type(name: &str, oid: i32) -> pgwire::api::Type {
    pgwire::api::Type::new(
        name.to_string(),
        oid as u32,
        postgres_types::Kind::Simple,
        "public".to_string(),
    )
}

/// pgvector's `halfvec` type.
pub fn halfvec_type() -> pgwire::api::Type {
    pgvector_type(crate::types::HALFVEC, crate::sql::catalog::HALFVEC_OID)
}

/// pgvector's binary `halfvec` made from its binary `vector`: the same u16 dimension
/// and unused u16, then each element as a big-endian IEEE binary16.
fn halfvec_binary(vector: &[u8]) -> Option<Vec<u8>> {
    let (head, body) = vector.split_at_checked(4)?;
    if body.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(4 + body.len() / 2);
    out.extend_from_slice(head);
    for x in body.chunks_exact(4) {
        let f = f32::from_be_bytes([x[0], x[1], x[2], x[3]]);
        out.extend_from_slice(&half::f16::from_f32(f).to_be_bytes());
    }
    Some(out)
}

/// A float as Postgres prints it, from the text pgwire printed (see
/// [`crate::types::pg_float`]); `None` if it is not a float.
pub fn pg_float_text(text: &str, single: bool) -> Option<String> {
    match text {
        "NaN" => return Some("NaN".into()),
        "inf" | "Infinity" => return Some("Infinity".into()),
        "-inf" | "-Infinity" => return Some("-Infinity".into()),
        _ => {}
    }
    Some(if single {
        crate::types::pg_float(text.parse::<f32>().ok()? as f64, true)
    } else {
        crate::types::pg_float(text.parse::<f64>().ok()?, false)
    })
}

/// A vector's text as pgvector prints it (`[1,1e-05]`, each element as float4 prints),
/// from the text the encoder printed.
fn vector_text(text: &str) -> Option<String> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let items = inner
        .split(',')
        .map(|x| x.parse::<f32>().ok())
        .collect::<Option<Vec<f32>>>()?;
    Some(crate::types::format_vector(&items))
}

/// A result cell the encoder does not write as Postgres would.
#[derive(Clone, Copy)]
enum Fix {
    /// A text-format float (`single`: float4), printed as Postgres prints it.
    Float(bool),
    /// Catalog `int2[]` text (`{1,2}`) wanted in binary.
    Int2ArrayBinary,
    /// A uuid's text wanted in binary (16 bytes).
    UuidBinary,
    /// jsonb wanted in binary: version 1, then the text.
    JsonbBinary,
    /// A halfvec wanted in binary, encoded as a vector.
    HalfvecBinary,
    /// A vector or halfvec in text: its elements printed as pgvector prints them.
    VectorText,
    /// A sparsevec's text wanted in binary.
    SparsevecBinary,
    /// A bit string's `0`s and `1`s wanted in binary.
    BitBinary,
    /// A time or timestamp in text: fractional seconds as Postgres prints them (none
    /// when zero, no trailing zeros).
    TimeText,
    /// An array of floats (`single`: float4) in text: each printed as Postgres prints
    /// it.
    FloatArrayText(bool),
    /// An array of timestamps in text: each as `TimeText` prints it, quoted (it holds
    /// a space) as Postgres quotes it.
    TimeArrayText,
    /// An interval in text: its seconds' fraction as `TimeText` prints it, and a `+` on
    /// a field that follows a negative one, as Postgres prints (`-1 days +02:03:00`).
    IntervalText,
}

/// An array's text with each element rewritten by `fix` (unchanged where it gives
/// None) and quoted where Postgres quotes; None if the text is not an array's.
fn array_text_fixed(text: &str, fix: impl Fn(&str) -> Option<String>) -> Option<String> {
    let items = crate::types::parse_pg_array(text).ok()?;
    Some(crate::types::array_text(
        items
            .into_iter()
            .map(|item| item.map(|x| fix(&x).unwrap_or(x))),
    ))
}

/// Postgres' binary `int2[]` of the text form `{1,2}` (None if it is not one).
fn int2_array_binary(text: &str) -> Option<Vec<u8>> {
    use bytes::BufMut;
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let elements: Vec<i16> = if inner.is_empty() {
        Vec::new()
    } else {
        inner
            .split(',')
            .map(|e| e.trim().parse().ok())
            .collect::<Option<_>>()?
    };
    let mut out = Vec::with_capacity(20 + 6 * elements.len());
    out.put_i32(i32::from(!elements.is_empty())); // dimensions
    out.put_i32(0); // no NULLs
    out.put_u32(pgwire::api::Type::INT2.oid());
    if !elements.is_empty() {
        out.put_i32(elements.len() as i32);
        out.put_i32(1); // lower bound
    }
    for e in elements {
        out.put_i32(2);
        out.put_i16(e);
    }
    Some(out)
}

/// Times as Postgres prints them: the encoder writes six digits of fractional seconds
/// always (`12:00:00.000000`); Postgres writes none when they are zero and drops
/// trailing zeros (`12:00:00`, `12:00:00.5`). `None` when nothing changes.
fn pg_time_text(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut i = 0;
    while i < b.len() {
        // `:SS.` followed by digits: seconds and their fraction.
        if b[i] == b'.'
            && i >= 3
            && b[i - 3] == b':'
            && b[i - 2].is_ascii_digit()
            && b[i - 1].is_ascii_digit()
        {
            let end = (i + 1..b.len())
                .find(|&k| !b[k].is_ascii_digit())
                .unwrap_or(b.len());
            let digits = text[i + 1..end].trim_end_matches('0');
            out.push_str(&text[done..i]);
            if !digits.is_empty() {
                out.push('.');
                out.push_str(digits);
            }
            done = end;
            i = end;
            continue;
        }
        i += 1;
    }
    (done > 0).then(|| {
        out.push_str(&text[done..]);
        out
    })
}

/// An interval's text as Postgres prints it (see [`Fix::IntervalText`]); None if it is.
fn pg_interval_text(text: &str) -> Option<String> {
    let trimmed = pg_time_text(text);
    let text = trimmed.as_deref().unwrap_or(text);
    let mut negative_before = false;
    let mut signed = false;
    let fields: Vec<String> = text
        .split(' ')
        .map(|field| {
            if field.starts_with('-') {
                negative_before = true;
            } else if negative_before && field.starts_with(|c: char| c.is_ascii_digit()) {
                signed = true;
                return format!("+{field}");
            }
            field.to_string()
        })
        .collect();
    (signed || trimmed.is_some()).then(|| fields.join(" "))
}

/// Rewrite the cells of a row the encoder does not write as Postgres would.
fn fix_cells(row: DataRow, fixes: &[(usize, Fix)]) -> DataRow {
    use bytes::{Buf, BufMut, BytesMut};
    let mut cells: Vec<Option<Vec<u8>>> = Vec::with_capacity(row.field_count as usize);
    let mut data = &row.data[..];
    for _ in 0..row.field_count {
        if data.remaining() < 4 {
            return row;
        }
        let len = data.get_i32();
        if len < 0 {
            cells.push(None);
        } else if data.remaining() < len as usize {
            return row;
        } else {
            cells.push(Some(data[..len as usize].to_vec()));
            data.advance(len as usize);
        }
    }
    for &(i, fix) in fixes {
        if let Fix::HalfvecBinary = fix {
            if let Some(Some(cell)) = cells.get_mut(i)
                && let Some(fixed) = halfvec_binary(cell)
            {
                *cell = fixed;
            }
            continue;
        }
        if let Some(Some(cell)) = cells.get_mut(i)
            && let Ok(text) = std::str::from_utf8(cell)
            && let Some(fixed) = match fix {
                Fix::Float(single) => pg_float_text(text, single).map(String::into_bytes),
                Fix::Int2ArrayBinary => int2_array_binary(text),
                Fix::UuidBinary => uuid::Uuid::parse_str(text)
                    .ok()
                    .map(|u| u.as_bytes().to_vec()),
                Fix::JsonbBinary => Some([&[1u8][..], text.as_bytes()].concat()),
                Fix::HalfvecBinary => None,
                Fix::VectorText => vector_text(text).map(String::into_bytes),
                Fix::BitBinary => Some(crate::types::bits_binary(text)),
                Fix::TimeText => pg_time_text(text).map(String::into_bytes),
                Fix::FloatArrayText(single) => {
                    array_text_fixed(text, |x| pg_float_text(x, single)).map(String::into_bytes)
                }
                Fix::TimeArrayText => array_text_fixed(text, pg_time_text).map(String::into_bytes),
                Fix::IntervalText => pg_interval_text(text).map(String::into_bytes),
                Fix::SparsevecBinary => crate::types::sparse::SparseVector::parse(text)
                    .ok()
                    .map(|s| s.to_binary()),
            }
        {
            *cell = fixed;
        }
    }
    let mut out = BytesMut::with_capacity(row.data.len() + 8);
    for cell in &cells {
        match cell {
            None => out.put_i32(-1),
            Some(c) => {
                out.put_i32(c.len() as i32);
                out.put_slice(c);
            }
        }
    }
    DataRow::new(out, row.field_count)
}

fn tag(text: &str) -> Tag {
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["INSERT", oid, n] => match (oid.parse::<u32>(), n.parse::<usize>()) {
            (Ok(o), Ok(n)) => Tag::new("INSERT").with_oid(o).with_rows(n),
            _ => Tag::new(text),
        },
        [verb @ ("UPDATE" | "DELETE" | "SELECT" | "COPY"), n] => match n.parse::<usize>() {
            Ok(n) => Tag::new(verb).with_rows(n),
            Err(_) => Tag::new(text),
        },
        _ => Tag::new(text),
    }
}

/// Turn an engine output into a pgwire response. The first batch is computed before
/// the response starts, so that most errors arrive as an ErrorResponse with their own
/// SQLSTATE rather than in the middle of a row stream.
pub async fn response(
    out: Output,
    format: &Format,
    limits: &super::StatementLimits,
) -> Result<Response> {
    // Rows a write returned go out as rows under the write's own tag.
    let (out, written) = match out {
        Output::Written { tag, schema, batch } => (Output::batch(schema, batch), Some(tag)),
        other => (other, None),
    };
    let mut response = match out {
        Output::Written { .. } => unreachable!("turned into rows above"),
        Output::Command(t) => Response::Execution(tag(&t)),
        Output::TransactionStart(t) => Response::TransactionStart(Tag::new(&t)),
        Output::TransactionEnd(t) => Response::TransactionEnd(Tag::new(&t)),
        Output::Empty => Response::EmptyQuery,
        Output::CopyIn { columns, binary } => {
            Response::CopyIn(pgwire::api::results::CopyResponse::new(
                i8::from(binary),
                columns,
                futures::stream::empty(),
            ))
        }
        Output::CopyOut {
            rows,
            names,
            options,
        } => return copy_out(*rows, names, options, limits).await,
        Output::Rows { schema, mut stream } => {
            let cleaned = without_stale_vector_marks(&schema);
            let fields =
                Arc::new(fields(&schema, format).map_err(|e| Error::internal(e.to_string()))?);
            // Arrays of arrays go to the encoder as the text or bytes they are sent as.
            let nested = super::arrays::columns(&schema, format);
            let nested_schema = (!nested.is_empty()).then(|| {
                super::arrays::encoded_schema(cleaned.as_deref().unwrap_or(&schema), &nested)
            });
            let first = match stream.next().await {
                Some(Ok(b)) => Some(b),
                Some(Err(e)) => return Err(Error::from(e)),
                None => None,
            };
            // Text announced as an array (`conkey`) is encoded as the text it is.
            let f2 = Arc::new(
                fields
                    .iter()
                    .zip(schema.fields())
                    .enumerate()
                    .map(|(i, (f, field))| {
                        if let Some((_, binary)) = nested.iter().find(|(c, _)| *c == i) {
                            return FieldInfo::new(
                                f.name().to_string(),
                                f.table_id(),
                                f.column_id(),
                                if *binary {
                                    pgwire::api::Type::BYTEA
                                } else {
                                    pgwire::api::Type::TEXT
                                },
                                f.format(),
                            )
                            .with_format_options(f.format_options().clone());
                        }
                        let text_as_int2_array = *f.datatype() == pgwire::api::Type::INT2_ARRAY
                            && field.data_type() == &datafusion::arrow::datatypes::DataType::Utf8;
                        if text_as_int2_array
                            || [
                                pgwire::api::Type::UUID,
                                pgwire::api::Type::JSON,
                                pgwire::api::Type::JSONB,
                            ]
                            .contains(f.datatype())
                            || f.datatype().oid() == crate::sql::catalog::SPARSEVEC_OID as u32
                            || *f.datatype() == pgwire::api::Type::BIT
                            || *f.datatype() == pgwire::api::Type::VARBIT
                        {
                            FieldInfo::new(
                                f.name().to_string(),
                                f.table_id(),
                                f.column_id(),
                                pgwire::api::Type::TEXT,
                                f.format(),
                            )
                            .with_format_options(f.format_options().clone())
                        } else if f.datatype().oid() == crate::sql::catalog::HALFVEC_OID as u32 {
                            FieldInfo::new(
                                f.name().to_string(),
                                f.table_id(),
                                f.column_id(),
                                arrow_pg::datatypes::pg_vector_type(),
                                f.format(),
                            )
                            .with_format_options(f.format_options().clone())
                        } else {
                            f.clone()
                        }
                    })
                    .collect::<Vec<_>>(),
            );
            let fixes: Vec<(usize, Fix)> = fields
                .iter()
                .zip(f2.iter())
                .enumerate()
                .filter_map(|(i, (f, encoded))| {
                    let text = f.format() == pgwire::api::results::FieldFormat::Text;
                    match (f.datatype(), encoded.datatype(), text) {
                        (&pgwire::api::Type::FLOAT8, _, true) => Some((i, Fix::Float(false))),
                        (&pgwire::api::Type::FLOAT4, _, true) => Some((i, Fix::Float(true))),
                        (&pgwire::api::Type::FLOAT8_ARRAY, _, true) => {
                            Some((i, Fix::FloatArrayText(false)))
                        }
                        (&pgwire::api::Type::FLOAT4_ARRAY, _, true) => {
                            Some((i, Fix::FloatArrayText(true)))
                        }
                        (
                            &pgwire::api::Type::TIMESTAMP_ARRAY
                            | &pgwire::api::Type::TIMESTAMPTZ_ARRAY,
                            _,
                            true,
                        ) => Some((i, Fix::TimeArrayText)),
                        (&pgwire::api::Type::INT2_ARRAY, &pgwire::api::Type::TEXT, false) => {
                            Some((i, Fix::Int2ArrayBinary))
                        }
                        (&pgwire::api::Type::UUID, &pgwire::api::Type::TEXT, false) => {
                            Some((i, Fix::UuidBinary))
                        }
                        (&pgwire::api::Type::JSONB, &pgwire::api::Type::TEXT, false) => {
                            Some((i, Fix::JsonbBinary))
                        }
                        (t, _, false) if t.oid() == crate::sql::catalog::HALFVEC_OID as u32 => {
                            Some((i, Fix::HalfvecBinary))
                        }
                        (t, _, false) if t.oid() == crate::sql::catalog::SPARSEVEC_OID as u32 => {
                            Some((i, Fix::SparsevecBinary))
                        }
                        (&pgwire::api::Type::BIT | &pgwire::api::Type::VARBIT, _, false) => {
                            Some((i, Fix::BitBinary))
                        }
                        (
                            &pgwire::api::Type::TIMESTAMP
                            | &pgwire::api::Type::TIMESTAMPTZ
                            | &pgwire::api::Type::TIME
                            | &pgwire::api::Type::TIMETZ,
                            _,
                            true,
                        ) => Some((i, Fix::TimeText)),
                        (&pgwire::api::Type::INTERVAL, _, true) => Some((i, Fix::IntervalText)),
                        (t, _, true)
                            if t.oid() == crate::sql::catalog::HALFVEC_OID as u32
                                || t.oid() == crate::sql::catalog::VECTOR_OID as u32 =>
                        {
                            Some((i, Fix::VectorText))
                        }
                        _ => None,
                    }
                })
                .collect();
            let head = futures::stream::iter(first.map(Ok));
            let (max_rows, max_bytes) = (limits.max_result_rows, limits.max_result_bytes);
            let (mut rows_sent, mut bytes_sent) = (0u64, 0u64);
            let rows = head
                .chain(stream)
                .map(
                    move |batch| -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> {
                        match batch {
                            Ok(b) => {
                                // Batches carry their schema's marks, which the encoder reads.
                                let b = match &cleaned {
                                    Some(c) => match datafusion::arrow::record_batch::RecordBatch::try_new(
                                        c.clone(),
                                        b.columns().to_vec(),
                                    ) {
                                        Ok(b) => b,
                                        Err(e) => {
                                            return Box::new(std::iter::once(Err(
                                                PgWireError::ApiError(Box::new(e)),
                                            )));
                                        }
                                    },
                                    None => b,
                                };
                                let b = match &nested_schema {
                                    Some(ns) => match super::arrays::encode(&b, ns, &nested) {
                                        Ok(b) => b,
                                        Err(e) => {
                                            return Box::new(std::iter::once(Err(
                                                PgWireError::UserError(Box::new(error_info(&e))),
                                            )));
                                        }
                                    },
                                    None => b,
                                };
                                arrow_pg::datatypes::encode_recordbatch(f2.clone(), b)
                            }
                            Err(e) => Box::new(std::iter::once(Err(PgWireError::UserError(
                                Box::new(error_info(&Error::from(e))),
                            )))),
                        }
                    },
                )
                .flat_map(futures::stream::iter)
                .map(move |row| {
                    let row = if fixes.is_empty() {
                        row?
                    } else {
                        fix_cells(row?, &fixes)
                    };
                    rows_sent += 1;
                    bytes_sent += row.data.len() as u64;
                    if rows_sent > max_rows || bytes_sent > max_bytes {
                        let e = Error::ProgramLimit(format!(
                            "result is larger than the limit of {max_rows} rows or {max_bytes} bytes (max_result_rows, max_result_bytes)"
                        ));
                        return Err(PgWireError::UserError(Box::new(error_info(&e))));
                    }
                    Ok(row)
                });
            Response::Query(QueryResponse::new(fields, rows))
        }
    };
    if let (Some(t), Response::Query(q)) = (written, &mut response) {
        q.set_command_tag(t);
    }
    Ok(response)
}

/// COPY TO STDOUT: the rows as a DataRow stream (text, or binary for the binary
/// format), each row one CopyData, the head (binary signature, header line) in the first. Not bound by the result limits: it streams.
/// A COPY of no rows with a head sends the head, then an empty CopyData, which
/// [`super::send_copy_out`] takes as "the message before held no row".
async fn copy_out(
    rows: Output,
    names: Vec<String>,
    options: crate::sql::copy::Options,
    limits: &super::StatementLimits,
) -> Result<Response> {
    use crate::sql::copy::Format as CopyFormat;
    use pgwire::messages::copy::CopyData;
    let binary = options.format == CopyFormat::Binary;
    let unlimited = super::StatementLimits {
        max_result_rows: u64::MAX,
        max_result_bytes: u64::MAX,
        ..limits.clone()
    };
    let format = if binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let Response::Query(q) = Box::pin(response(rows, &format, &unlimited)).await? else {
        return Err(Error::internal("COPY TO of a statement without rows"));
    };
    let names = if names.is_empty() {
        q.row_schema.iter().map(|f| f.name().to_string()).collect()
    } else {
        names
    };
    let columns = q.row_schema.len();
    let head = options.head(&names);
    let start = (
        q.data_rows,
        Some(head),
        std::collections::VecDeque::new(),
        false,
    );
    let stream =
        futures::stream::unfold(start, move |(mut rows, mut head, mut pending, mut done)| {
            let options = options.clone();
            async move {
                loop {
                    if let Some(m) = pending.pop_front() {
                        return Some((Ok(m), (rows, head, pending, done)));
                    }
                    if done {
                        return None;
                    }
                    match rows.next().await {
                        Some(Ok(row)) => {
                            let mut out = head.take().unwrap_or_default();
                            options.row(row.field_count, &row.data, &mut out);
                            let m = CopyData::new(out.into());
                            return Some((Ok(m), (rows, head, pending, done)));
                        }
                        Some(Err(e)) => return Some((Err(e), (rows, head, pending, true))),
                        None => {
                            done = true;
                            if let Some(h) = head.take().filter(|h| !h.is_empty()) {
                                pending.push_back(CopyData::new(h.into()));
                                pending.push_back(CopyData::new(bytes::Bytes::new()));
                            }
                        }
                    }
                }
            }
        });
    // (The binary trailer is the response's to add.)
    Ok(Response::CopyOut(pgwire::api::results::CopyResponse::new(
        i8::from(binary),
        columns,
        stream,
    )))
}

#[cfg(test)]
mod tests {
    use super::{pg_float_text, pg_interval_text, pg_time_text};

    #[test]
    fn intervals_print_as_postgres_prints_them() {
        assert_eq!(
            pg_interval_text("1 day 02:03:04.500000").as_deref(),
            Some("1 day 02:03:04.5")
        );
        assert_eq!(
            pg_interval_text("-1 days 02:03:00").as_deref(),
            Some("-1 days +02:03:00")
        );
        assert_eq!(
            pg_interval_text("-1 mons 3 days -00:00:01").as_deref(),
            Some("-1 mons +3 days -00:00:01")
        );
        assert_eq!(pg_interval_text("1 year 2 mons"), None);
        assert_eq!(pg_interval_text("-10 mons -3 days"), None);
    }

    #[test]
    fn times_print_their_fraction_as_postgres_does() {
        assert_eq!(
            pg_time_text("2024-01-01 01:00:00.000000+00").as_deref(),
            Some("2024-01-01 01:00:00+00")
        );
        assert_eq!(
            pg_time_text("12:00:00.500000").as_deref(),
            Some("12:00:00.5")
        );
        assert_eq!(
            pg_time_text("{\"2024-01-01 00:00:00.123456\",NULL}").as_deref(),
            Some("{\"2024-01-01 00:00:00.123456\",NULL}")
        );
        assert_eq!(pg_time_text("2024-01-01 00:00:00+00"), None);
    }

    #[test]
    fn floats_print_as_postgres_prints_them() {
        for (pgwire, single, postgres) in [
            ("1.0", false, "1"),
            ("2.5", false, "2.5"),
            ("1e20", false, "1e+20"),
            ("1e15", false, "1e+15"),
            ("100000000000000.0", false, "100000000000000"),
            ("0.0001", false, "0.0001"),
            ("1e-5", false, "1e-05"),
            ("-1.5e-7", false, "-1.5e-07"),
            ("0.1", false, "0.1"),
            ("0.30000000000000004", false, "0.30000000000000004"),
            ("123456.789", false, "123456.789"),
            ("inf", false, "Infinity"),
            ("-inf", false, "-Infinity"),
            ("NaN", false, "NaN"),
            ("0", false, "0"),
            ("1000000.0", true, "1e+06"),
            ("100000.0", true, "100000"),
            ("0.1", true, "0.1"),
            ("3.4028235e38", true, "3.4028235e+38"),
            // A tie at the shortest length is broken to even, as Postgres' Ryu does.
            ("3.30078125", true, "3.3007812"),
            ("1.2e-5", true, "1.2e-05"),
        ] {
            assert_eq!(
                pg_float_text(pgwire, single).as_deref(),
                Some(postgres),
                "{pgwire}"
            );
        }
    }
}
