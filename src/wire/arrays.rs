//! Arrays the row encoder does not write: arrays of arrays (`array_agg(array[a, b])`,
//! `ARRAY[[1,2],[3,4]]`), Postgres' multi-dimensional arrays, and arrays of types kept
//! as text that are not text (`uuid[]`, `jsonb[]`, `json[]` columns, marked so). Such
//! a column goes out as its text form (`{{1,2},{3,4}}`) or its binary form
//! (dimensions, then the elements in row-major order), announced as the array type of
//! its elements (`bytea[]` for a 2-D array of bytea, as in Postgres).

use std::sync::Arc;

use bytes::BufMut;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema, SchemaRef,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;

use crate::error::{Error, Result};

/// The element type of a list, if `t` is one.
fn list_element(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    }
}

/// The type of the scalars at the bottom of a list of lists, if `t` is one.
fn nested_leaf(t: &DataType) -> Option<&DataType> {
    let mut leaf = list_element(list_element(t)?)?;
    while let Some(inner) = list_element(leaf) {
        leaf = inner;
    }
    Some(leaf)
}

/// The Postgres type of a column of arrays of arrays (`bytea[]` for one of bytea), if
/// `t` is one whose elements this module writes.
pub fn array_type(t: &DataType) -> Option<Type> {
    Some(match nested_leaf(t)? {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA_ARRAY,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT_ARRAY,
        DataType::Boolean => Type::BOOL_ARRAY,
        DataType::Int16 => Type::INT2_ARRAY,
        DataType::Int32 => Type::INT4_ARRAY,
        DataType::Int64 => Type::INT8_ARRAY,
        DataType::Float32 => Type::FLOAT4_ARRAY,
        DataType::Float64 => Type::FLOAT8_ARRAY,
        _ => return None,
    })
}

/// The Postgres type of a column this module writes: an array of arrays, or a list of
/// text marked as an array of `uuid`, `jsonb` or `json`.
pub fn column_type(field: &Field) -> Option<Type> {
    if let DataType::List(e) = field.data_type()
        && e.data_type() == &DataType::Utf8
    {
        let marked = field
            .metadata()
            .get(crate::types::PG_TYPE_KEY)
            .map(String::as_str);
        match marked {
            Some("uuid[]") => return Some(Type::UUID_ARRAY),
            Some("jsonb[]") => return Some(Type::JSONB_ARRAY),
            Some("json[]") => return Some(Type::JSON_ARRAY),
            _ => {}
        }
    }
    array_type(field.data_type())
}

/// The columns of `schema` this module writes, each with whether it goes out in
/// binary.
pub fn columns(schema: &Schema, format: &pgwire::api::portal::Format) -> Vec<(usize, bool)> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| column_type(f).is_some())
        .map(|(i, _)| {
            (
                i,
                format.format_for(i) == pgwire::api::results::FieldFormat::Binary,
            )
        })
        .collect()
}

/// `schema` with the given columns as the text (or, in binary, the bytes) they are
/// sent as.
pub fn encoded_schema(schema: &Schema, columns: &[(usize, bool)]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match columns.iter().find(|(c, _)| *c == i) {
            Some((_, binary)) => Field::new(
                f.name(),
                if *binary {
                    DataType::Binary
                } else {
                    DataType::Utf8
                },
                true,
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with the given columns replaced by their wire forms, under `schema` (from
/// [`encoded_schema`]).
pub fn encode(
    batch: &RecordBatch,
    schema: &SchemaRef,
    columns: &[(usize, bool)],
) -> Result<RecordBatch> {
    let mut out = batch.columns().to_vec();
    for &(i, binary) in columns {
        let column = batch.column(i);
        let leaf_type = column_type(batch.schema_ref().field(i))
            .ok_or_else(|| Error::internal("not an array this module writes"))?;
        out[i] = if binary {
            let mut b = BinaryBuilder::new();
            for r in 0..column.len() {
                if column.is_null(r) {
                    b.append_null();
                } else {
                    b.append_value(binary_form(column, r, &leaf_type)?);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        } else {
            let mut b = StringBuilder::new();
            for r in 0..column.len() {
                if column.is_null(r) {
                    b.append_null();
                } else {
                    b.append_value(text_form(column, r)?);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        };
    }
    RecordBatch::try_new(schema.clone(), out).map_err(Error::internal)
}

/// The items of the list at row `r` of `array`.
fn items(array: &dyn Array, r: usize) -> Option<ArrayRef> {
    match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(r)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(r)),
        DataType::FixedSizeList(..) => Some(array.as_fixed_size_list().value(r)),
        _ => None,
    }
}

/// A scalar of an array: its array and row.
type Scalar = (ArrayRef, usize);

/// The dimensions of the array at row `r`, checked to be rectangular (2202E as in
/// Postgres if they are not), with its scalars in row-major order.
fn flatten(array: &dyn Array, r: usize) -> Result<(Vec<usize>, Vec<Scalar>)> {
    let mismatch = || Error::Detailed {
        code: "2202E",
        message: "multidimensional arrays must have array expressions with matching dimensions"
            .into(),
        detail: String::new(),
    };
    // Each level: the (array, row) pairs whose lists make it up.
    let top = items(array, r).ok_or_else(|| Error::internal("not a list"))?;
    let mut dims = vec![top.len()];
    let mut level: Vec<(ArrayRef, usize)> = (0..top.len()).map(|i| (top.clone(), i)).collect();
    while let Some((first, _)) = level.first() {
        if list_element(first.data_type()).is_none() {
            break;
        }
        let mut next = Vec::new();
        let mut width = None;
        for (a, i) in &level {
            if a.is_null(*i) {
                return Err(mismatch());
            }
            let inner = items(a.as_ref(), *i).ok_or_else(mismatch)?;
            if *width.get_or_insert(inner.len()) != inner.len() {
                return Err(mismatch());
            }
            next.extend((0..inner.len()).map(|k| (inner.clone(), k)));
        }
        dims.push(width.unwrap_or(0));
        level = next;
    }
    if dims.contains(&0) {
        // An empty array has no dimensions in Postgres (`{}`).
        return Ok((Vec::new(), Vec::new()));
    }
    Ok((dims, level))
}

/// A scalar's text as an array element: quoted when Postgres would quote it.
fn element_text(a: &dyn Array, i: usize, out: &mut String) {
    if a.is_null(i) {
        out.push_str("NULL");
    } else {
        out.push_str(&crate::types::array_element(
            &crate::types::pg_text::text_of(a, i, true),
        ));
    }
}

/// The text form of the array at row `r` of `column`: `{{a,b},{c,d}}`.
fn text_form(column: &dyn Array, r: usize) -> Result<String> {
    let (dims, scalars) = flatten(column, r)?;
    if dims.is_empty() {
        return Ok("{}".into());
    }
    let mut out = String::new();
    // A brace opens where a sub-array of each dimension starts and closes where it ends.
    let strides: Vec<usize> = (0..dims.len())
        .map(|d| dims[d..].iter().product())
        .collect();
    for (n, (a, i)) in scalars.iter().enumerate() {
        let opens = strides.iter().filter(|&&s| n % s == 0).count();
        if n > 0 {
            out.push(',');
        }
        for _ in 0..opens {
            out.push('{');
        }
        element_text(a.as_ref(), *i, &mut out);
        let closes = strides.iter().filter(|&&s| (n + 1) % s == 0).count();
        for _ in 0..closes {
            out.push('}');
        }
    }
    Ok(out)
}

/// The binary form of the array at row `r` of `column`, of Postgres type `ty`.
fn binary_form(column: &dyn Array, r: usize, ty: &Type) -> Result<Vec<u8>> {
    let (dims, scalars) = flatten(column, r)?;
    let element_type = match ty.kind() {
        postgres_types::Kind::Array(e) => e,
        _ => return Err(Error::internal("not an array type")),
    };
    let element = element_type.oid();
    let mut out = Vec::new();
    out.put_i32(dims.len() as i32);
    out.put_i32(i32::from(scalars.iter().any(|(a, i)| a.is_null(*i))));
    out.put_u32(element);
    for d in &dims {
        out.put_i32(*d as i32);
        out.put_i32(1); // lower bound
    }
    for (a, i) in &scalars {
        if a.is_null(*i) {
            out.put_i32(-1);
            continue;
        }
        let start = out.len();
        out.put_i32(0); // its length, set below
        if matches!(a.data_type(), DataType::Utf8) && *element_type == Type::UUID {
            let text = a.as_string::<i32>().value(*i);
            let u = uuid::Uuid::parse_str(text)
                .map_err(|_| Error::internal(format!("not a uuid: {text}")))?;
            out.put_slice(u.as_bytes());
        } else if matches!(a.data_type(), DataType::Utf8) && *element_type == Type::JSONB {
            out.put_u8(1); // jsonb's binary version
            out.put_slice(a.as_string::<i32>().value(*i).as_bytes());
        } else {
            match a.data_type() {
                DataType::Binary => out.put_slice(a.as_binary::<i32>().value(*i)),
                DataType::LargeBinary => out.put_slice(a.as_binary::<i64>().value(*i)),
                DataType::BinaryView => out.put_slice(a.as_binary_view().value(*i)),
                DataType::Utf8 => out.put_slice(a.as_string::<i32>().value(*i).as_bytes()),
                DataType::LargeUtf8 => out.put_slice(a.as_string::<i64>().value(*i).as_bytes()),
                DataType::Utf8View => out.put_slice(a.as_string_view().value(*i).as_bytes()),
                DataType::Boolean => out.put_u8(u8::from(a.as_boolean().value(*i))),
                DataType::Int16 => out.put_i16(a.as_primitive::<Int16Type>().value(*i)),
                DataType::Int32 => out.put_i32(a.as_primitive::<Int32Type>().value(*i)),
                DataType::Int64 => out.put_i64(a.as_primitive::<Int64Type>().value(*i)),
                DataType::Float32 => out.put_f32(a.as_primitive::<Float32Type>().value(*i)),
                DataType::Float64 => out.put_f64(a.as_primitive::<Float64Type>().value(*i)),
                other => return Err(Error::internal(format!("array element {other}"))),
            }
        }
        let len = (out.len() - start - 4) as i32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListBuilder, StringBuilder as Sb};

    fn two_d(rows: &[&[&[Option<&str>]]]) -> ArrayRef {
        let mut b = ListBuilder::new(ListBuilder::new(Sb::new()));
        for row in rows {
            for inner in row.iter() {
                for v in inner.iter() {
                    b.values().values().append_option(*v);
                }
                b.values().append(true);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    }

    #[test]
    fn text_of_a_two_dimensional_array_quotes_as_postgres() {
        let a = two_d(&[&[&[Some("a"), Some("b c")], &[None, Some("x\"y")]], &[]]);
        assert_eq!(
            text_form(a.as_ref(), 0).expect("an array"),
            r#"{{a,"b c"},{NULL,"x\"y"}}"#
        );
        assert_eq!(text_form(a.as_ref(), 1).expect("an array"), "{}");
        let ragged = two_d(&[&[&[Some("a")], &[Some("b"), Some("c")]]]);
        assert!(text_form(ragged.as_ref(), 0).is_err());
    }

    #[test]
    fn binary_of_a_two_dimensional_array_has_both_dimensions() {
        let a = two_d(&[&[&[Some("a"), Some("bc")], &[Some("d"), None]]]);
        let b = binary_form(a.as_ref(), 0, &Type::TEXT_ARRAY).expect("an array");
        let mut want = Vec::new();
        for x in [2i32, 1] {
            want.extend(x.to_be_bytes());
        }
        want.extend(Type::TEXT.oid().to_be_bytes());
        for x in [2i32, 1, 2, 1, 1] {
            want.extend(x.to_be_bytes());
        }
        want.push(b'a');
        want.extend(2i32.to_be_bytes());
        want.extend(b"bc");
        want.extend(1i32.to_be_bytes());
        want.push(b'd');
        want.extend((-1i32).to_be_bytes());
        assert_eq!(b, want);
    }
}
