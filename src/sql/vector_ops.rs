//! pgvector's operators between two vectors, for `vector` and `halfvec`: `+`, `-` and
//! `*` (element by element), `||` (one after the other) and the comparisons (`<`, `=`,
//! ...: element by element, then the shorter first), as pgvector defines them. And
//! `x::vector` of text, an array or a halfvec: a typed vector, so that the operators,
//! `pg_typeof` and the wire see a vector where pgvector would have one.
//!
//! The operators are planned with the operands' types known ([`VectorOperators`]): a
//! vector or halfvec on either side, the other a vector of the same type or untyped text
//! (a literal or a parameter, read as that type). A halfvec's result is a halfvec.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::Error;
use crate::types::{ColumnType, Value, value_from_array};

/// What `x::vector` (but for a parameter) becomes: `vector(x)`, or `vector(x, n)` for
/// `vector(n)`.
pub const VECTOR: &str = "vector";

/// pgvector's largest dimension for `vector` and `halfvec`.
const MAX_DIM: usize = 16_000;

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Concat,
    /// -1, 0 or 1, compared with 0 by the operator that asked.
    Cmp,
}

impl Op {
    const ALL: [(Op, &'static str); 5] = [
        (Op::Add, "vector_add"),
        (Op::Sub, "vector_sub"),
        (Op::Mul, "vector_mul"),
        (Op::Concat, "vector_concat"),
        (Op::Cmp, "vector_cmp"),
    ];

    fn name(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(o, _)| *o == self)
            .map(|(_, n)| *n)
            .unwrap_or_default()
    }
}

/// The functions the operators become, and `vector(x [, n])`.
pub fn functions() -> Vec<ScalarUDF> {
    let mut out: Vec<ScalarUDF> = Op::ALL
        .iter()
        .map(|&(op, name)| {
            ScalarUDF::new_from_impl(VectorOperator {
                op,
                name,
                signature: Signature::any(2, Volatility::Immutable),
            })
        })
        .collect();
    out.push(ScalarUDF::new_from_impl(VectorCast {
        signature: Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Immutable,
        ),
    }));
    out
}

/// The pgvector type of a field: `vector` or `halfvec` (None for any other).
fn kind_of(f: &FieldRef) -> Option<ColumnType> {
    f.metadata().get(crate::types::PG_VECTOR_KEY)?;
    Some(
        if f.metadata()
            .get(crate::types::PG_TYPE_KEY)
            .is_some_and(|t| t == crate::types::HALFVEC)
        {
            ColumnType::HalfVec(0)
        } else {
            ColumnType::Vector(0)
        },
    )
}

fn type_name(t: &ColumnType) -> &'static str {
    if matches!(t, ColumnType::HalfVec(_)) {
        crate::types::HALFVEC
    } else {
        VECTOR
    }
}

/// A vector of one row of an argument: pgvector's text, a vector, or an integer array.
fn vector_at(
    array: &datafusion::arrow::array::ArrayRef,
    row: usize,
) -> Result<Option<Vec<f32>>, Error> {
    Ok(match value_from_array(array, row)? {
        Value::Null => None,
        v @ (Value::Vector(_) | Value::Text(_) | Value::IntArray(_) | Value::Array(_)) => {
            Some(crate::types::vector_of(v)?)
        }
        other => {
            return Err(Error::DatatypeMismatch(format!(
                "cannot cast {} to vector",
                crate::types::value_type_name(&other)
            )));
        }
    })
}

/// Rows of vector values as an argument array of a function's answer: a scalar for
/// scalar arguments.
fn answer(ty: &ColumnType, values: Vec<Value>, scalar: bool) -> DfResult<ColumnarValue> {
    let array = crate::types::build_array(ty, values.iter());
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
    } else {
        ColumnarValue::Array(array)
    })
}

/// A result element of `+`, `-` or `*` as pgvector checks it: infinite is an overflow,
/// a product of two non-zero elements that is zero an underflow (22003).
fn checked(x: f32, a: f32, b: f32, op: Op, half: bool) -> Result<f32, Error> {
    let x = if half {
        half::f16::from_f32(x).to_f32()
    } else {
        x
    };
    if x.is_infinite() {
        return Err(Error::NumericOutOfRange(
            "value out of range: overflow".into(),
        ));
    }
    if op == Op::Mul && x == 0.0 && a != 0.0 && b != 0.0 {
        return Err(Error::NumericOutOfRange(
            "value out of range: underflow".into(),
        ));
    }
    Ok(x)
}

/// pgvector's order of two vectors: element by element, then the shorter first.
fn compare(a: &[f32], b: &[f32]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return std::cmp::Ordering::Less;
        }
        if x > y {
            return std::cmp::Ordering::Greater;
        }
    }
    a.len().cmp(&b.len())
}

fn same_dims(a: &[f32], b: &[f32], half: bool) -> Result<(), Error> {
    if a.len() != b.len() {
        return Err(Error::DataException(format!(
            "different {} dimensions {} and {}",
            if half { crate::types::HALFVEC } else { VECTOR },
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// One of pgvector's operators on two vectors (see the module's docs).
#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorOperator {
    op: Op,
    name: &'static str,
    signature: Signature,
}

impl VectorOperator {
    /// The operands' type: a halfvec if either is one.
    fn operand_type(fields: &[FieldRef]) -> ColumnType {
        fields
            .iter()
            .filter_map(kind_of)
            .find(|t| matches!(t, ColumnType::HalfVec(_)))
            .unwrap_or(ColumnType::Vector(0))
    }

    fn apply(&self, a: Vec<f32>, b: Vec<f32>, half: bool) -> Result<Value, Error> {
        let elementwise = |f: fn(f32, f32) -> f32| -> Result<Value, Error> {
            same_dims(&a, &b, half)?;
            let out = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| checked(f(x, y), x, y, self.op, half))
                .collect::<Result<Vec<f32>, Error>>()?;
            Ok(Value::Vector(out))
        };
        match self.op {
            Op::Add => elementwise(|x, y| x + y),
            Op::Sub => elementwise(|x, y| x - y),
            Op::Mul => elementwise(|x, y| x * y),
            Op::Concat => {
                if a.len() + b.len() > MAX_DIM {
                    return Err(Error::ProgramLimit(format!(
                        "vector cannot have more than {MAX_DIM} dimensions"
                    )));
                }
                let mut out = a;
                out.extend(b);
                Ok(Value::Vector(out))
            }
            Op::Cmp => Ok(Value::Int(compare(&a, &b) as i64)),
        }
    }
}

impl ScalarUDFImpl for VectorOperator {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(if self.op == Op::Cmp {
            DataType::Int32
        } else {
            ColumnType::Vector(0).arrow_type()
        })
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<FieldRef> {
        Ok(Arc::new(if self.op == Op::Cmp {
            datafusion::arrow::datatypes::Field::new(self.name, DataType::Int32, true)
        } else {
            Self::operand_type(args.arg_fields).arrow_field(self.name, true)
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ty = Self::operand_type(&args.arg_fields);
        let half = matches!(ty, ColumnType::HalfVec(_));
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // An untyped operand is read as the other's type: a halfvec's is rounded.
        let at = |i: usize, row: usize| -> Result<Option<Vec<f32>>, Error> {
            match vector_at(&arrays[i], row)? {
                Some(v) if half => Ok(Some(crate::types::to_half(v)?)),
                other => Ok(other),
            }
        };
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            out.push(match (at(0, row)?, at(1, row)?) {
                (Some(a), Some(b)) => self.apply(a, b, half)?,
                _ => Value::Null,
            });
        }
        if self.op == Op::Cmp {
            let ints: datafusion::arrow::array::Int32Array = out
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i as i32),
                    _ => None,
                })
                .collect();
            let array: datafusion::arrow::array::ArrayRef = Arc::new(ints);
            return Ok(if scalar {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            });
        }
        answer(&ty, out, scalar)
    }
}

/// `x::vector` and `x::vector(n)`: pgvector's text, an integer array or a halfvec made a
/// vector (22000 for another dimension than `n`'s, as pgvector).
#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorCast {
    signature: Signature,
}

impl ScalarUDFImpl for VectorCast {
    fn name(&self) -> &str {
        VECTOR
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(ColumnType::Vector(0).arrow_type())
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<FieldRef> {
        Ok(Arc::new(ColumnType::Vector(0).arrow_field(VECTOR, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let dim = match arrays.get(1) {
                None => 0,
                Some(a) => match value_from_array(a, row)? {
                    Value::Int(n) => usize::try_from(n).unwrap_or(0),
                    _ => 0,
                },
            };
            out.push(match vector_at(&arrays[0], row)? {
                None => Value::Null,
                Some(v) => {
                    if v.len() > MAX_DIM {
                        return Err(Error::ProgramLimit(format!(
                            "vector cannot have more than {MAX_DIM} dimensions"
                        ))
                        .into());
                    }
                    crate::types::check_vector(&v, dim)?;
                    Value::Vector(v)
                }
            });
        }
        answer(&ColumnType::Vector(0), out, scalar)
    }
}

/// Plans pgvector's operators where an operand is a vector or a halfvec (see the
/// module's docs); any other pairing is left to the query engine.
#[derive(Debug)]
pub struct VectorOperators {
    functions: std::collections::HashMap<&'static str, Arc<ScalarUDF>>,
}

impl VectorOperators {
    pub fn new(functions: &[ScalarUDF]) -> VectorOperators {
        VectorOperators {
            functions: functions
                .iter()
                .filter_map(|f| {
                    let (_, name) = Op::ALL.iter().find(|(_, n)| *n == f.name())?;
                    Some((*name, Arc::new(f.clone())))
                })
                .collect(),
        }
    }

    fn call(&self, op: Op, left: Expr, right: Expr) -> Expr {
        Expr::ScalarFunction(ScalarFunction::new_udf(
            self.functions[op.name()].clone(),
            vec![left, right],
        ))
    }
}

/// Untyped: a string literal, a bare NULL or a parameter whose type is not known yet.
fn untyped(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(
            ScalarValue::Utf8(_)
                | ScalarValue::LargeUtf8(_)
                | ScalarValue::Utf8View(_)
                | ScalarValue::Null,
            _
        )
    ) || matches!(e, Expr::Placeholder(p) if p.field.is_none())
}

impl ExprPlanner for VectorOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        let op = match expr.op {
            B::Plus => Op::Add,
            B::Minus => Op::Sub,
            B::Multiply => Op::Mul,
            B::StringConcat => Op::Concat,
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => Op::Cmp,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let kind = |e: &Expr| e.to_field(schema).ok().and_then(|(_, f)| kind_of(&f));
        let (lk, rk) = (kind(&expr.left), kind(&expr.right));
        let fits = match (&lk, &rk) {
            (None, None) => return Ok(PlannerResult::Original(expr)),
            (Some(l), Some(r)) => l == r,
            (Some(_), None) => untyped(&expr.right),
            (None, Some(_)) => untyped(&expr.left),
        };
        if !fits {
            let name = |k: &Option<ColumnType>, e: &Expr| match k {
                Some(t) => type_name(t).to_string(),
                None => e
                    .get_type(schema)
                    .map(|t| crate::sql::constraints::sql_type_name(&t))
                    .unwrap_or_else(|_| "unknown".into()),
            };
            return Err(Error::UndefinedFunction(format!(
                "operator does not exist: {} {} {}",
                name(&lk, &expr.left),
                expr.op,
                name(&rk, &expr.right)
            ))
            .into());
        }
        let RawBinaryExpr {
            op: sql_op,
            left,
            right,
        } = expr;
        let planned = self.call(op, left, right);
        if op != Op::Cmp {
            return Ok(PlannerResult::Planned(planned));
        }
        use datafusion::logical_expr::Operator as O;
        let cmp = match sql_op {
            B::Eq => O::Eq,
            B::NotEq => O::NotEq,
            B::Lt => O::Lt,
            B::LtEq => O::LtEq,
            B::Gt => O::Gt,
            _ => O::GtEq,
        };
        Ok(PlannerResult::Planned(Expr::BinaryExpr(
            datafusion::logical_expr::BinaryExpr::new(
                Box::new(planned),
                cmp,
                Box::new(Expr::Literal(ScalarValue::Int32(Some(0)), None)),
            ),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_compare_element_by_element_then_by_length() {
        use std::cmp::Ordering::*;
        assert_eq!(compare(&[10.0], &[9.0]), Greater);
        assert_eq!(compare(&[1.0, 2.0], &[1.0, 2.0, 0.0]), Less);
        assert_eq!(compare(&[1.0, 3.0], &[1.0, 2.0, 5.0]), Greater);
        assert_eq!(compare(&[-0.0], &[0.0]), Equal);
    }

    #[test]
    fn overflow_and_underflow_are_22003() {
        let op = VectorOperator {
            op: Op::Mul,
            name: "vector_mul",
            signature: Signature::any(2, Volatility::Immutable),
        };
        let under = op
            .apply(vec![1e-30], vec![1e-30], false)
            .expect_err("an error");
        assert_eq!(under.sqlstate(), "22003");
        let over = op
            .apply(vec![1e30], vec![1e30], false)
            .expect_err("an error");
        assert_eq!(over.sqlstate(), "22003");
        // halfvec's range ends at 65504.
        let half = op
            .apply(vec![300.0], vec![300.0], true)
            .expect_err("an error");
        assert_eq!(half.sqlstate(), "22003");
        let dims = op
            .apply(vec![1.0], vec![1.0, 2.0], false)
            .expect_err("an error");
        assert_eq!(dims.sqlstate(), "22000");
    }
}
