//! Operators between an array and Postgres' array text: `tags @> '{a}'`,
//! `'{c}' <@ tags`, `n && '{3,4}'`, `tags = '{a,b}'`. Postgres types an untyped literal
//! from the other operand; DataFusion takes it for text and refuses the comparison
//! ("Cannot infer common argument type"). Here the literal is read as an array of the
//! other operand's element type (Postgres' quoting, escapes and NULL), while the
//! statement is planned, and the operator goes on with two arrays. `a && b`
//! (overlapping arrays, Django's `__overlap`) is planned here too, as
//! `array_has_any(a, b)`: DataFusion's parser reads `&&` but plans no operator for it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::Error;

#[derive(Debug, Default)]
pub struct ArrayOperators;

/// The element field of `e`'s type, when it is a one-dimensional list.
fn element(e: &Expr, schema: &DFSchema) -> Option<FieldRef> {
    match e.get_type(schema).ok()? {
        DataType::List(f) if !matches!(f.data_type(), DataType::List(_)) => Some(f),
        _ => None,
    }
}

/// The text of an untyped string literal.
fn text_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

/// Postgres' array text read as a list literal of elements like `field`.
pub fn list_literal(text: &str, field: &FieldRef) -> Result<Expr, Error> {
    let items = crate::types::parse_pg_array(text)?;
    let n = items.len();
    let strings: Arc<dyn Array> = Arc::new(StringArray::from(items));
    let options = datafusion::arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let values =
        datafusion::arrow::compute::cast_with_options(&strings, field.data_type(), &options)
            .map_err(|_| {
                // The first element that does not convert, named as Postgres names it.
                let strings = strings.as_string::<i32>();
                let bad = (0..n)
                    .find(|&i| {
                        datafusion::arrow::compute::cast_with_options(
                            &strings.slice(i, 1),
                            field.data_type(),
                            &options,
                        )
                        .is_err()
                    })
                    .map_or("", |i| strings.value(i));
                Error::InvalidText(format!(
                    "invalid input syntax for type {}: \"{bad}\"",
                    crate::sql::constraints::sql_type_name(field.data_type())
                ))
            })?;
    let list = ListArray::try_new(field.clone(), OffsetBuffer::from_lengths([n]), values, None)
        .map_err(Error::internal)?;
    Ok(Expr::Literal(ScalarValue::List(Arc::new(list)), None))
}

impl ExprPlanner for ArrayOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        if !matches!(
            expr.op,
            B::Eq
                | B::NotEq
                | B::Lt
                | B::LtEq
                | B::Gt
                | B::GtEq
                | B::AtArrow
                | B::ArrowAt
                | B::PGOverlap
        ) {
            return Ok(PlannerResult::Original(expr));
        }
        let RawBinaryExpr {
            op,
            mut left,
            mut right,
        } = expr;
        let typed = |text: &Expr, other: &Expr| -> DfResult<Option<Expr>> {
            match (text_literal(text), element(other, schema)) {
                (Some(t), Some(f)) => list_literal(t, &f)
                    .map(Some)
                    .map_err(|e| DataFusionError::External(Box::new(e))),
                _ => Ok(None),
            }
        };
        if let Some(l) = typed(&left, &right)? {
            left = l;
        } else if let Some(r) = typed(&right, &left)? {
            right = r;
        }
        if op == B::PGOverlap
            && element(&left, schema).is_some()
            && element(&right, schema).is_some()
        {
            return Ok(PlannerResult::Planned(
                datafusion::functions_nested::expr_fn::array_has_any(left, right),
            ));
        }
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;

    use super::list_literal;

    #[test]
    fn array_text_becomes_a_list_of_the_element_type() {
        let ints = Arc::new(Field::new("item", DataType::Int32, true));
        let Ok(Expr::Literal(ScalarValue::List(l), _)) = list_literal("{1, NULL,-3}", &ints) else {
            panic!("not a list literal")
        };
        assert_eq!(
            format!("{:?}", l.value(0)),
            "PrimitiveArray<Int32>\n[\n  1,\n  null,\n  -3,\n]"
        );
        let text = Arc::new(Field::new("item", DataType::Utf8, true));
        let Ok(Expr::Literal(ScalarValue::List(l), _)) = list_literal(r#"{"a b",c}"#, &text) else {
            panic!("not a list literal")
        };
        assert_eq!(l.value(0).len(), 2);
        assert!(list_literal("{1,x}", &ints).is_err());
        assert!(list_literal("1,2", &ints).is_err());
    }
}
