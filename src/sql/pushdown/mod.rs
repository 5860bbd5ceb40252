//! The pushdown verdict: which WHERE predicates become a vector-search filter.
//! [`to_predicate`] is a pure function from a DataFusion expression to the
//! backend-neutral [`Predicate`]; `None` means "not pushable, apply after the join".

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, expr::InList};

use crate::store::TableDef;
use crate::store::filter::{CmpOp, Predicate, Scalar};
use crate::types::ColumnType;

mod json;

/// Largest integer that survives a round trip through f64 (ranges are f64 in Qdrant).
const EXACT_F64_INT: i64 = 1 << 53;

pub fn to_predicate(expr: &Expr, table: &TableDef) -> Option<Predicate> {
    json::to_predicate(expr, table).or_else(|| plain(expr, table))
}

/// A predicate on the table's own columns. (A json predicate only ever loosens, so it
/// cannot be negated: [`falsity`] builds on this alone.)
fn plain(expr: &Expr, table: &TableDef) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => Some(Predicate::And(vec![
            to_predicate(left, table)?,
            to_predicate(right, table)?,
        ])),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(Predicate::Or(vec![
            to_predicate(left, table)?,
            to_predicate(right, table)?,
        ])),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let op = cmp_op(*op)?;
            if let (Some(col), Some(v)) = (column_of(left, table), scalar_of(right)) {
                compare(table, col, op, v)
            } else if let (Some(v), Some(col)) = (scalar_of(left), column_of(right, table)) {
                compare(table, col, op.flip(), v)
            } else {
                None
            }
        }
        // NOT holds where its operand is false, not merely not true: NULL stays out.
        Expr::Not(inner) => falsity(inner, table),
        Expr::IsNull(inner) => {
            let col = column_of(inner, table)?;
            Some(Predicate::IsNull {
                column: col.to_string(),
            })
        }
        Expr::IsNotNull(inner) => {
            let col = column_of(inner, table)?;
            Some(Predicate::Not(Box::new(Predicate::IsNull {
                column: col.to_string(),
            })))
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let col = column_of(expr, table)?;
            let ty = column_type(table, col)?;
            let mut values = Vec::with_capacity(list.len());
            for e in list {
                let v = scalar_of(e)?;
                if !matchable(ty, &v) {
                    return None;
                }
                values.push(v);
            }
            let p = Predicate::In {
                column: col.to_string(),
                values,
            };
            if *negated {
                // NOT IN is false on NULL, like `<>`.
                Some(Predicate::And(vec![
                    Predicate::Not(Box::new(p)),
                    Predicate::Not(Box::new(Predicate::IsNull {
                        column: col.to_string(),
                    })),
                ]))
            } else {
                Some(p)
            }
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let col = column_of(expr, table)?;
            let lo = compare(table, col, CmpOp::GtEq, scalar_of(low)?)?;
            let hi = compare(table, col, CmpOp::LtEq, scalar_of(high)?)?;
            let p = Predicate::And(vec![lo, hi]);
            Some(if *negated {
                // NOT BETWEEN is not true on NULL either.
                Predicate::And(vec![Predicate::Not(Box::new(p)), not_null(col)])
            } else {
                p
            })
        }
        Expr::ScalarFunction(f)
            if matches!(f.name(), "array_has" | "array_contains" | "list_has")
                && f.args.len() == 2 =>
        {
            let col = column_of(&f.args[0], table)?;
            let ty = column_type(table, col)?;
            let v = scalar_of(&f.args[1])?;
            let ok = match ty {
                ColumnType::TextArray => matches!(v, Scalar::Text(_)),
                ColumnType::IntArray | ColumnType::BigIntArray => matches!(v, Scalar::Int(_)),
                _ => false,
            };
            ok.then(|| Predicate::Contains {
                column: col.to_string(),
                value: v,
            })
        }
        _ => None,
    }
}

/// Where `expr` is false (in SQL's three-valued logic: not where it is NULL), for
/// `NOT expr`.
fn falsity(expr: &Expr, table: &TableDef) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => Some(Predicate::Or(vec![
            falsity(left, table)?,
            falsity(right, table)?,
        ])),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(Predicate::And(vec![
            falsity(left, table)?,
            falsity(right, table)?,
        ])),
        Expr::Not(inner) => to_predicate(inner, table),
        // IS [NOT] NULL is never NULL itself.
        Expr::IsNull(_) | Expr::IsNotNull(_) => Some(Predicate::Not(Box::new(plain(expr, table)?))),
        // A test of one column against constants is NULL exactly where the column is.
        _ => {
            let col = match expr {
                Expr::BinaryExpr(BinaryExpr { left, right, .. }) => {
                    column_of(left, table).or_else(|| column_of(right, table))
                }
                Expr::InList(InList { expr, .. }) | Expr::Between(Between { expr, .. }) => {
                    column_of(expr, table)
                }
                Expr::ScalarFunction(f) => f.args.first().and_then(|a| column_of(a, table)),
                _ => None,
            }?;
            let p = plain(expr, table)?;
            Some(Predicate::And(vec![
                Predicate::Not(Box::new(p)),
                not_null(col),
            ]))
        }
    }
}

fn not_null(column: &str) -> Predicate {
    Predicate::Not(Box::new(Predicate::IsNull {
        column: column.to_string(),
    }))
}

fn cmp_op(op: Operator) -> Option<CmpOp> {
    Some(match op {
        Operator::Eq => CmpOp::Eq,
        Operator::NotEq => CmpOp::NotEq,
        Operator::Lt => CmpOp::Lt,
        Operator::LtEq => CmpOp::LtEq,
        Operator::Gt => CmpOp::Gt,
        Operator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

fn column_of<'a>(e: &'a Expr, table: &TableDef) -> Option<&'a str> {
    match e {
        Expr::Column(Column { name, .. }) => {
            let idx = table.column_index(name)?;
            // A column kept out of the payload (`payload_exclude`) is filtered after the join.
            (Some(idx) != table.vector_column && !table.kept_out(name)).then_some(name.as_str())
        }
        Expr::Cast(c) => column_of(&c.expr, table),
        _ => None,
    }
}

fn column_type<'a>(table: &'a TableDef, name: &str) -> Option<&'a ColumnType> {
    table.column_index(name).map(|i| &table.columns[i].ty)
}

fn scalar_of(e: &Expr) -> Option<Scalar> {
    match e {
        Expr::Literal(v, _) => scalar_value(v),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => {
                let casted = v.cast_to(c.field.data_type()).ok()?;
                scalar_value(&casted)
            }
            _ => None,
        },
        _ => None,
    }
}

fn scalar_value(v: &ScalarValue) -> Option<Scalar> {
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Scalar::Bool(*b),
        ScalarValue::Int8(Some(i)) => Scalar::Int(*i as i64),
        ScalarValue::Int16(Some(i)) => Scalar::Int(*i as i64),
        ScalarValue::Int32(Some(i)) => Scalar::Int(*i as i64),
        ScalarValue::Int64(Some(i)) => Scalar::Int(*i),
        ScalarValue::UInt8(Some(i)) => Scalar::Int(*i as i64),
        ScalarValue::UInt16(Some(i)) => Scalar::Int(*i as i64),
        ScalarValue::UInt32(Some(i)) => Scalar::Int(*i as i64),
        ScalarValue::UInt64(Some(i)) => Scalar::Int(i64::try_from(*i).ok()?),
        ScalarValue::Float32(Some(f)) => Scalar::Float(*f as f64),
        ScalarValue::Float64(Some(f)) => Scalar::Float(*f),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Scalar::Text(s.clone()),
        ScalarValue::Date32(Some(d)) => Scalar::Int(*d as i64),
        ScalarValue::TimestampMicrosecond(Some(t), _) => Scalar::Int(*t),
        ScalarValue::TimestampMillisecond(Some(t), _) => Scalar::Int(t.checked_mul(1000)?),
        ScalarValue::TimestampSecond(Some(t), _) => Scalar::Int(t.checked_mul(1_000_000)?),
        ScalarValue::TimestampNanosecond(Some(t), _) => {
            if t % 1000 != 0 {
                return None;
            }
            Scalar::Int(t / 1000)
        }
        _ => return None,
    })
}

/// Whether `column = value` can be tested by an exact payload match.
fn matchable(ty: &ColumnType, v: &Scalar) -> bool {
    matches!(
        (ty, v),
        (ColumnType::Text | ColumnType::Uuid, Scalar::Text(_))
            | (ColumnType::Bool, Scalar::Bool(_))
            | (
                ColumnType::SmallInt
                    | ColumnType::Int
                    | ColumnType::BigInt
                    | ColumnType::Date
                    | ColumnType::Timestamp
                    | ColumnType::TimestampTz,
                Scalar::Int(_),
            )
    )
}

pub(crate) fn compare(
    table: &TableDef,
    column: &str,
    op: CmpOp,
    value: Scalar,
) -> Option<Predicate> {
    let ty = column_type(table, column)?;
    let ok = match op {
        CmpOp::Eq | CmpOp::NotEq => {
            matchable(ty, &value)
                || (matches!(
                    ty,
                    ColumnType::Real
                        | ColumnType::Double
                        | ColumnType::SmallInt
                        | ColumnType::Int
                        | ColumnType::BigInt
                ) && matches!(value, Scalar::Float(_)))
                || (matches!(ty, ColumnType::Real | ColumnType::Double)
                    && matches!(value, Scalar::Int(_)))
        }
        _ => match (ty, &value) {
            (
                ColumnType::SmallInt
                | ColumnType::Int
                | ColumnType::BigInt
                | ColumnType::Real
                | ColumnType::Double
                | ColumnType::Date
                | ColumnType::Timestamp
                | ColumnType::TimestampTz,
                Scalar::Int(i),
            ) => i.abs() < EXACT_F64_INT,
            (
                ColumnType::SmallInt
                | ColumnType::Int
                | ColumnType::BigInt
                | ColumnType::Real
                | ColumnType::Double,
                Scalar::Float(_),
            ) => true,
            _ => false,
        },
    };
    // A float column stores f32 values widened to f64 in the payload; equality on
    // `real` would compare different roundings, so leave it to the SQL layer.
    let ok = ok && !(matches!(ty, ColumnType::Real) && matches!(op, CmpOp::Eq | CmpOp::NotEq));
    ok.then(|| Predicate::Compare {
        column: column.to_string(),
        op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn table() -> TableDef {
        TableDef::for_tests(
            "docs",
            &[
                ("id", ColumnType::BigInt),
                ("category", ColumnType::Text),
                ("year", ColumnType::Int),
                ("tags", ColumnType::TextArray),
                ("score", ColumnType::Real),
                ("embedding", ColumnType::Vector(3)),
            ],
        )
    }

    #[test]
    fn verdicts_per_predicate() {
        let t = table();
        let p = |e: Expr| to_predicate(&e, &t).map(|p| p.to_string());
        assert_eq!(
            p(col("category").eq(lit("ml"))).as_deref(),
            Some("category = 'ml'")
        );
        assert_eq!(
            p(lit(2020).lt_eq(col("year"))).as_deref(),
            Some("year >= 2020")
        );
        assert_eq!(
            p(col("year").between(lit(1), lit(3))).as_deref(),
            Some("(year >= 1 AND year <= 3)")
        );
        assert_eq!(
            p(col("category").in_list(vec![lit("a"), lit("b")], true)).as_deref(),
            Some("(NOT category IN ('a', 'b') AND NOT category IS NULL)")
        );
        assert_eq!(p(col("year").is_null()).as_deref(), Some("year IS NULL"));
        assert_eq!(
            p(col("category").eq(lit("a")).or(col("year").gt(lit(5)))).as_deref(),
            Some("(category = 'a' OR year > 5)")
        );
        // Not pushable: text ranges, LIKE, the vector column, unknown columns, real equality.
        assert_eq!(p(col("category").gt(lit("a"))), None);
        assert_eq!(p(col("category").like(lit("a%"))), None);
        assert_eq!(p(col("distance").lt(lit(0.5))), None);
        assert_eq!(p(col("score").eq(lit(0.5f32))), None);
        assert!(p(col("score").gt(lit(0.5f32))).is_some());
        // One unpushable side makes an OR unpushable.
        assert_eq!(
            p(col("category")
                .eq(lit("a"))
                .or(col("category").like(lit("b%")))),
            None
        );
    }
}
