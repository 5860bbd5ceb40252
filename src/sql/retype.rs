//! `ALTER COLUMN c [SET DATA] TYPE t [USING e]` where `t` is stored otherwise than the
//! column is: `integer` to `bigint` (Django's move to `BigAutoField` sends
//! `ALTER COLUMN "id" TYPE bigint USING "id"::bigint`), `vector` to `vector(3)`, `text`
//! to `jsonb USING c::jsonb`, ... A CQL column cannot change its type, so, as Postgres
//! rewrites the table, every row is converted and written again under a new stored
//! name ([`crate::engine::ddl::rewrite`]), and the table takes the new definition.
//!
//! As in Postgres: without `USING` the column's values must have an assignment cast to
//! `t` (42804 with a HINT to add `USING` otherwise: `text` to `integer` needs one); a
//! value that does not fit (`smallint` out of range, a vector of another dimension, a
//! `varchar(n)` too short) fails the statement with its own SQLSTATE and the table
//! stays as it was. An identity column's sequence takes the new type.

use datafusion::sql::sqlparser::ast::Expr;

use super::Session;
use super::statements::{fit_varchar, quote_ident};
use crate::error::{Error, Result};
use crate::store::{Row, TableDef};
use crate::types::{ColumnType, Value, coerce, value_from_array};

/// One column changing type in an ALTER TABLE.
pub struct Retype {
    column: usize,
    /// The type its stored values have.
    from: ColumnType,
    using: Option<Expr>,
}

/// Check that column `i` of `def` can take type `ty` (and `varchar`, its length limit
/// if a character type), and give it them in `def`; the rows are converted by
/// [`retype`].
pub(super) fn check(
    def: &mut TableDef,
    i: usize,
    ty: ColumnType,
    varchar: Option<u32>,
    using: Option<&Expr>,
) -> Result<Retype> {
    let column = &def.columns[i];
    let name = column.name.clone();
    if column.identity.is_some()
        && !matches!(
            ty,
            ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt
        )
    {
        return Err(Error::InvalidParameter(
            "identity column type must be smallint, integer, or bigint".into(),
        ));
    }
    if def.primary_key.contains(&i) && !ty.is_key_type() {
        return Err(Error::InvalidTableDefinition(format!(
            "column \"{name}\" of type {} cannot be part of a primary key",
            ty.sql_name()
        )));
    }
    if let Some(ix) = def.json_indexes.iter().find(|ix| ix.column == i)
        && ty != ColumnType::Jsonb
    {
        return Err(Error::FeatureNotSupported(format!(
            "column \"{name}\" has the jsonb index \"{}\": drop it before the column becomes {}",
            ix.name,
            ty.sql_name()
        )));
    }
    if ty.is_vector() && def.column_index(super::vector_search::DISTANCE).is_some() {
        return Err(Error::InvalidTableDefinition(format!(
            "\"{}\" has a column named \"distance\", which vector_search adds: it cannot have a vector column",
            def.name
        )));
    }
    if using.is_none() && !assignable(&column.ty, &ty) {
        return Err(Error::Hinted {
            code: "42804",
            message: format!(
                "column \"{name}\" cannot be cast automatically to type {}",
                ty.sql_name()
            ),
            hint: format!(
                "You might need to specify \"USING {}::{}\".",
                quote_ident(&name),
                ty.sql_name()
            ),
        });
    }
    let from = column.ty.clone();
    def.columns[i].ty = ty;
    def.columns[i].varchar = varchar;
    Ok(Retype {
        column: i,
        from,
        using: using.cloned(),
    })
}

/// Whether Postgres converts a `from` column to `to` without a `USING` (an implicit or
/// assignment cast, pgvector's included).
fn assignable(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType as T;
    let numeric = |t: &T| {
        matches!(
            t,
            T::SmallInt | T::Int | T::BigInt | T::Real | T::Double | T::Numeric(..)
        )
    };
    let vector = |t: &T| matches!(t, T::Vector(_) | T::HalfVec(_) | T::SparseVec(_));
    let time = |t: &T| matches!(t, T::Timestamp | T::TimestampTz | T::Date);
    let bits = |t: &T| matches!(t, T::Bit(_) | T::VarBit(_));
    let json = |t: &T| matches!(t, T::Json | T::Jsonb);
    let int_array = |t: &T| matches!(t, T::IntArray | T::BigIntArray);
    match (from, to) {
        // Every type's text output is an assignment cast to a string type.
        (_, T::Text) => true,
        (a, b) if numeric(a) && numeric(b) => true,
        (a, b) if vector(a) && vector(b) => true,
        (a, b) if time(a) && time(b) => true,
        (a, b) if bits(a) && bits(b) => true,
        (a, b) if json(a) && json(b) => true,
        (a, T::IntArray | T::BigIntArray | T::TextArray | T::Vector(_) | T::HalfVec(_)) => {
            int_array(a)
        }
        (a, b) => a == b,
    }
}

/// Convert every row of `def` as the columns in `retypes` now are in `new`, and put
/// `new` in its place.
pub(super) async fn retype(
    session: &Session,
    def: &TableDef,
    mut new: TableDef,
    retypes: Vec<Retype>,
) -> Result<()> {
    // The index holds a retyped column while it can, and takes one it can hold now.
    let default = def.default_distance();
    let mut vectors: Vec<_> = new
        .vectors()
        .into_iter()
        .filter(|&(c, d)| new.index_holds(c, d))
        .collect();
    for r in &retypes {
        let c = r.column;
        if !vectors.iter().any(|&(v, _)| v == c)
            && !def.index_holds(c, default)
            && new.index_holds(c, default)
        {
            vectors.push((c, default));
        }
    }
    new.set_vectors(vectors);
    // The CHECK constraints are tested on the converted rows (the foreign keys name
    // rows by their values, which a conversion keeps).
    let mut checks = new.clone();
    checks.foreign_keys.clear();
    checks.unique.clear();
    let (retypes, new_ref, checks) = (&retypes, &new, &checks);
    let convert = move |rows: Vec<Row>| async move {
        let mut computed = Vec::with_capacity(retypes.len());
        for r in retypes {
            computed.push(match &r.using {
                Some(e) if !rows.is_empty() => Some(using_values(session, def, e, &rows).await?),
                _ => None,
            });
        }
        let mut out = Vec::with_capacity(rows.len());
        for (k, mut row) in rows.into_iter().enumerate() {
            for (r, values) in retypes.iter().zip(&computed) {
                let (value, using) = match values {
                    Some(v) => (v[k].clone(), true),
                    None => (std::mem::replace(&mut row[r.column], Value::Null), false),
                };
                row[r.column] = converted(value, r, new_ref, using)?;
            }
            out.push(row);
        }
        if !checks.checks.is_empty() {
            super::constraints::check_written(session, checks, &out).await?;
        }
        Ok(out)
    };
    let core = &session.engine.core;
    crate::engine::ddl::rewrite(core, def, new.clone(), &session.notices, convert).await?;
    // An identity column's sequence takes the column's type (and its bounds).
    let now = core.table(&def.name)?;
    for r in retypes {
        let column = &new.columns[r.column];
        if column.identity.is_none() || column.ty == r.from {
            continue;
        }
        let owner = (
            now.stored_name().to_string(),
            column.stored_name().to_string(),
        );
        for seq in core.sequence_defs() {
            if seq.owned_by.as_ref() != Some(&owner) {
                continue;
            }
            let changed = super::sequences::retyped(&seq, column.ty.clone())?;
            core.replace_sequence(changed).await?;
        }
    }
    Ok(())
}

/// `USING e` over `rows` (as `def` keeps them): one value per row.
async fn using_values(
    session: &Session,
    def: &TableDef,
    using: &Expr,
    rows: &[Row],
) -> Result<Vec<Value>> {
    let sql = format!(
        "SELECT ({using}) FROM {} AS {}",
        def.sql_name(),
        quote_ident(def.relname())
    );
    let (_, batch) = super::statements::over_rows(session, def, &sql, rows).await?;
    if batch.num_rows() != rows.len() {
        return Err(Error::internal("USING gave another number of rows"));
    }
    let column = batch.column(0);
    (0..rows.len())
        .map(|k| value_from_array(column, k))
        .collect()
}

/// A value of the column before (or its `USING` expression's) as the column now keeps it.
fn converted(value: Value, r: &Retype, new: &TableDef, using: bool) -> Result<Value> {
    let column = &new.columns[r.column];
    if value.is_null() {
        return Ok(Value::Null);
    }
    let from = (!using).then_some(&r.from);
    let value = match (&column.ty, value) {
        (ColumnType::Text, v) => Value::Text(text_of(v, from, &column.name)?),
        (ColumnType::Vector(_) | ColumnType::HalfVec(_), Value::Text(s))
            if matches!(r.from, ColumnType::SparseVec(_)) && !using =>
        {
            Value::Vector(crate::types::sparse::SparseVector::parse(&s)?.to_dense())
        }
        // A float4 as the double it is, not the decimal it prints as.
        (ColumnType::Double, Value::Float(f)) if r.from == ColumnType::Real && !using => {
            Value::Float(f64::from(f as f32))
        }
        // A float becomes an integer rounded half to even (Postgres' rint).
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, Value::Float(f)) => {
            Value::Float(f.round_ties_even())
        }
        (_, v) => v,
    };
    let value = coerce(value, &column.ty).map_err(|e| match e {
        Error::DatatypeMismatch(_) => Error::Hinted {
            code: "42804",
            message: format!(
                "result of USING clause for column \"{}\" cannot be cast automatically to type {}",
                column.name,
                column.ty.sql_name()
            ),
            hint: "You might need to add an explicit cast.".into(),
        },
        e => e,
    })?;
    match column.varchar {
        Some(n) if n > 0 => fit_varchar(value, n),
        _ => Ok(value),
    }
}

/// A value's text, as Postgres' output function for its type writes it (`from`: the
/// column's type before, when the value is the column's own).
fn text_of(value: Value, from: Option<&ColumnType>, column: &str) -> Result<String> {
    use crate::types::{array_text, format_bytea, format_decimal, format_vector, pg_float};
    Ok(match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => pg_float(f, from == Some(&ColumnType::Real)),
        Value::Text(s) => s,
        Value::Uuid(u) => u.to_string(),
        Value::Timestamp(_) if from == Some(&ColumnType::TimestampTz) => {
            return Err(Error::FeatureNotSupported(format!(
                "column \"{column}\": a timestamp with time zone becomes text only through USING to_char(...)"
            )));
        }
        Value::Timestamp(t) => {
            let secs = t.div_euclid(1_000_000);
            let micros = t.rem_euclid(1_000_000);
            let at = chrono::DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| Error::NumericOutOfRange("timestamp out of range".into()))?;
            let mut s = at.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string();
            if micros != 0 {
                let fraction = format!("{micros:06}");
                s.push('.');
                s.push_str(fraction.trim_end_matches('0'));
            }
            s
        }
        Value::Date(d) => {
            let at = chrono::DateTime::from_timestamp(i64::from(d) * 86_400, 0)
                .ok_or_else(|| Error::NumericOutOfRange("date out of range".into()))?;
            at.naive_utc().format("%Y-%m-%d").to_string()
        }
        Value::IntArray(a) => array_text(a.into_iter().map(|x| x.map(|i| i.to_string()))),
        Value::TextArray(a) => array_text(a.into_iter()),
        Value::Array(a) => {
            let element = from.and_then(ColumnType::element);
            array_text(
                a.into_iter()
                    .map(|x| {
                        (!x.is_null())
                            .then(|| text_of(x, element.as_ref(), column))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?
                    .into_iter(),
            )
        }
        Value::Vector(v) => format_vector(&v),
        Value::Bytes(b) => format_bytea(&b),
        Value::Decimal(u, s) => format_decimal(u, s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_assignment_casts_go_without_using() {
        use ColumnType as T;
        assert!(assignable(&T::Int, &T::BigInt));
        assert!(assignable(&T::BigInt, &T::SmallInt));
        assert!(assignable(&T::Int, &T::Text));
        assert!(assignable(&T::Vector(0), &T::HalfVec(3)));
        assert!(assignable(&T::IntArray, &T::Vector(3)));
        assert!(assignable(&T::Date, &T::TimestampTz));
        assert!(!assignable(&T::Text, &T::Int));
        assert!(!assignable(&T::Text, &T::Jsonb));
        assert!(!assignable(&T::Int, &T::Bool));
        assert!(!assignable(&T::Uuid, &T::Int));
        assert!(!assignable(&T::TextArray, &T::IntArray));
    }

    #[test]
    fn values_become_text_as_postgres_prints_them() {
        let text = |v, from| text_of(v, from, "c").expect("a text");
        assert_eq!(
            text(Value::Float(0.1f32 as f64), Some(&ColumnType::Real)),
            "0.1"
        );
        assert_eq!(text(Value::Float(1e20), Some(&ColumnType::Double)), "1e+20");
        assert_eq!(text(Value::Bool(true), None), "true");
        assert_eq!(
            text(
                Value::Timestamp(1_700_000_000_500_000),
                Some(&ColumnType::Timestamp)
            ),
            "2023-11-14 22:13:20.5"
        );
        assert_eq!(text(Value::Date(-1), None), "1969-12-31");
        assert_eq!(text(Value::Decimal(-1205, 2), None), "-12.05");
        assert_eq!(
            text(
                Value::TextArray(vec![
                    Some("a b".into()),
                    None,
                    Some("NULL".into()),
                    Some("x".into())
                ]),
                None
            ),
            "{\"a b\",NULL,\"NULL\",x}"
        );
        assert_eq!(text(Value::Vector(vec![1.0, 2.5]), None), "[1,2.5]");
        assert!(text_of(Value::Timestamp(0), Some(&ColumnType::TimestampTz), "c").is_err());
    }
}
