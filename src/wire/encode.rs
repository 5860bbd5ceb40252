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

/// Result columns that are arrays of oids in Postgres' catalog but come out of
/// DataFusion as `int4[]` (its `array_agg` drops the marker that makes an Int32 an
/// oid). Drivers decode them by name-agnostic type: asyncpg, for one, ships only the
/// `oid[]` and `text[]` array codecs before it has introspected anything, so its own
/// type query must answer `oid[]` here.
const OID_ARRAY_COLUMNS: [&str; 4] = ["attrtypoids", "proargtypes", "proallargtypes", "indclass"];

pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    use datafusion::arrow::datatypes::DataType;
    let mut out = arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)?;
    for (info, field) in out.iter_mut().zip(schema.fields()) {
        let retype = if OID_ARRAY_COLUMNS.contains(&field.name().as_str())
            && matches!(field.data_type(), DataType::List(e) if e.data_type() == &DataType::Int32)
        {
            Some(pgwire::api::Type::OID_ARRAY)
        } else if field
            .metadata()
            .contains_key(arrow_pg::datatypes::PG_OID_ALIAS_KEY)
            && !field.data_type().is_integer()
        {
            // The oid marker survives casts (`typelem::regtype::text`): a text column
            // is text, whatever column it came from.
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
    }
    Ok(out)
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
    Ok(match out {
        Output::Command(t) => Response::Execution(tag(&t)),
        Output::TransactionStart(t) => Response::TransactionStart(Tag::new(&t)),
        Output::TransactionEnd(t) => Response::TransactionEnd(Tag::new(&t)),
        Output::Empty => Response::EmptyQuery,
        Output::CopyIn { columns } => Response::CopyIn(pgwire::api::results::CopyResponse::new(
            0,
            columns,
            futures::stream::empty(),
        )),
        Output::Rows { schema, mut stream } => {
            let fields =
                Arc::new(fields(&schema, format).map_err(|e| Error::internal(e.to_string()))?);
            let first = match stream.next().await {
                Some(Ok(b)) => Some(b),
                Some(Err(e)) => return Err(Error::from(e)),
                None => None,
            };
            let f2 = fields.clone();
            let head = futures::stream::iter(first.map(Ok));
            let (max_rows, max_bytes) = (limits.max_result_rows, limits.max_result_bytes);
            let (mut rows_sent, mut bytes_sent) = (0u64, 0u64);
            let rows = head
                .chain(stream)
                .map(
                    move |batch| -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> {
                        match batch {
                            Ok(b) => arrow_pg::datatypes::encode_recordbatch(f2.clone(), b),
                            Err(e) => Box::new(std::iter::once(Err(PgWireError::UserError(
                                Box::new(error_info(&Error::from(e))),
                            )))),
                        }
                    },
                )
                .flat_map(futures::stream::iter)
                .map(move |row| {
                    let row = row?;
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
    })
}
