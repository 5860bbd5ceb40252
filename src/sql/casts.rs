//! Casts as Postgres makes them, where DataFusion's differ. An analyzer rule, run after
//! type coercion, replaces:
//!
//! - `x::text` of a timestamp, an array, a float or bytes with `pg_text(x)`. DataFusion
//!   writes Arrow's display forms: a timestamp as `2020-01-01T00:00:00.500Z`, an array
//!   as `[a b, , c]`, a float as `1e20`, bytes as the characters they happen to spell.
//!   Postgres writes `2020-01-01 00:00:00.5+00`, `{"a b",NULL,c}`, `1e+20` and
//!   `\x0102`, and clients and applications read those (`created_at::text`,
//!   `tags::text`). Other casts to text are left to DataFusion.
//! - a cast of a float or a numeric to an integer type, `x::int`, with one of
//!   `pg_round(x)`: Postgres rounds (a numeric half away from zero, `5.5::int` is 6; a
//!   float to the nearest even, `2.5::float8::int` is 2), DataFusion cuts the fraction
//!   off (Django's `Cast(rating, IntegerField())` gave 5 for 5.55).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// Whether a cast of a `t` value to text is written here rather than by Arrow.
fn written_here(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..)
            | DataType::Float32
            | DataType::Float64
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
    )
}

/// The rule: casts to text of the types [`written_here`] become `pg_text(x)`, casts of
/// fractional numbers to integers round first.
#[derive(Debug)]
pub struct PgCasts {
    text: Arc<ScalarUDF>,
    round: Arc<ScalarUDF>,
}

impl PgCasts {
    pub fn new() -> PgCasts {
        PgCasts {
            text: Arc::new(ScalarUDF::new_from_impl(PgText::new())),
            round: Arc::new(ScalarUDF::new_from_impl(PgRound::new())),
        }
    }

    fn rewrite(&self, e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let (inner, to) = match &e {
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                (expr, field.data_type().clone())
            }
            _ => return Ok(Transformed::no(e)),
        };
        // A type that cannot be worked out here (an outer query's column) is left.
        let Ok((_, field)) = inner.to_field(schema) else {
            return Ok(Transformed::no(e));
        };
        if to.is_integer() {
            if !rounded_here(field.data_type()) {
                return Ok(Transformed::no(e));
            }
            let rounded = Expr::ScalarFunction(ScalarFunction::new_udf(
                self.round.clone(),
                vec![inner.as_ref().clone()],
            ));
            return Ok(Transformed::yes(match e {
                Expr::TryCast(_) => Expr::TryCast(TryCast::new(Box::new(rounded), to)),
                _ => Expr::Cast(Cast::new(Box::new(rounded), to)),
            }));
        }
        if !matches!(
            to,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) {
            return Ok(Transformed::no(e));
        }
        // pgvector's types have their own text (`[1,2,3]`).
        if !written_here(field.data_type())
            || field.metadata().contains_key(crate::types::PG_VECTOR_KEY)
        {
            return Ok(Transformed::no(e));
        }
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(
            self.text.clone(),
            vec![inner.as_ref().clone()],
        ));
        Ok(Transformed::yes(if to == DataType::Utf8 {
            call
        } else {
            Expr::Cast(Cast::new(Box::new(call), to))
        }))
    }
}

impl AnalyzerRule for PgCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = datafusion::logical_expr::utils::merge_schema(&node.inputs());
            if let LogicalPlan::TableScan(scan) = &node {
                schema.merge(scan.projected_schema.as_ref());
            }
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                let out = e.transform_up(|x| self.rewrite(x, &schema))?;
                Ok(if out.transformed {
                    out.update_data(|x| saved.restore(x))
                } else {
                    out
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_casts"
    }
}

/// Whether a cast of a `t` value to an integer rounds it first.
fn rounded_here(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

/// `pg_round(x)`: a float rounded to the nearest integer, halves to the even one (C's
/// `rint`, as Postgres' float-to-integer casts); a numeric to no decimals, halves away
/// from zero (as Postgres' numeric-to-integer casts). Of the argument's type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgRound {
    signature: Signature,
}

impl PgRound {
    fn new() -> PgRound {
        PgRound {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgRound {
    fn name(&self) -> &str {
        "pg_round"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match arg_types.first() {
            Some(d @ DataType::Decimal128(..)) => d.clone(),
            _ => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, Decimal128Array, Float64Array};
        use datafusion::arrow::datatypes::{Decimal128Type, Float64Type};
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let array = args.args[0].to_array(args.number_rows)?;
        let out: ArrayRef = match array.data_type() {
            DataType::Decimal128(p, s) => {
                let unit = 10i128
                    .checked_pow(u32::try_from(*s).unwrap_or(0))
                    .unwrap_or(1);
                let rounded: Decimal128Array = array.as_primitive::<Decimal128Type>().unary(|v| {
                    let whole = v / unit;
                    let rest = v % unit;
                    let up = if rest.abs() * 2 >= unit {
                        rest.signum()
                    } else {
                        0
                    };
                    (whole + up) * unit
                });
                Arc::new(rounded.with_precision_and_scale(*p, *s)?)
            }
            _ => {
                let floats = datafusion::arrow::compute::cast(&array, &DataType::Float64)?;
                let rounded: Float64Array = floats
                    .as_primitive::<Float64Type>()
                    .unary(f64::round_ties_even);
                Arc::new(rounded)
            }
        };
        super::columnar(out, scalar)
    }
}

/// `pg_text(x)`: Postgres' text form of a value.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgText {
    signature: Signature,
}

impl PgText {
    fn new() -> PgText {
        PgText {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgText {
    fn name(&self) -> &str {
        "pg_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let array = args.args[0].to_array(args.number_rows)?;
        let mut out = StringBuilder::with_capacity(array.len(), array.len() * 16);
        for i in 0..array.len() {
            if array.is_null(i) {
                out.append_null();
            } else {
                out.append_value(crate::types::pg_text::text_of(&array, i, false));
            }
        }
        let out: ArrayRef = Arc::new(out.finish());
        super::columnar(out, scalar)
    }
}
