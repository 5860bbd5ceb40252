//! `x::text` as Postgres writes it. DataFusion casts a value to text with Arrow's
//! display forms: a timestamp as `2020-01-01T00:00:00.500Z`, an array as `[a b, , c]`,
//! a float as `1e20`, bytes as the characters they happen to spell. Postgres writes
//! `2020-01-01 00:00:00.5+00`, `{"a b",NULL,c}`, `1e+20` and `\x0102`, and clients and
//! applications read those (`created_at::text`, `tags::text`). An analyzer rule, run
//! after type coercion, replaces each such cast with `pg_text(x)`, whose output is
//! Postgres' text form of the value; other casts to text are left to DataFusion.

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
    )
}

/// The rule: casts to text of the types [`written_here`] become `pg_text(x)`.
#[derive(Debug)]
pub struct PgTextCasts {
    text: Arc<ScalarUDF>,
}

impl PgTextCasts {
    pub fn new() -> PgTextCasts {
        PgTextCasts {
            text: Arc::new(ScalarUDF::new_from_impl(PgText::new())),
        }
    }

    fn rewrite(&self, e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let (inner, to) = match &e {
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                (expr, field.data_type().clone())
            }
            _ => return Ok(Transformed::no(e)),
        };
        if !matches!(
            to,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) {
            return Ok(Transformed::no(e));
        }
        // A type that cannot be worked out here (an outer query's column) is left.
        let Ok((_, field)) = inner.to_field(schema) else {
            return Ok(Transformed::no(e));
        };
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

impl AnalyzerRule for PgTextCasts {
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
        "pg_text_casts"
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
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}
