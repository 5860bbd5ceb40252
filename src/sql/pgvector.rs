//! pgvector syntax. The distance operators `<->` (l2), `<=>` (cosine) and `<#>` (negative
//! inner product) become the functions `l2_distance`, `cosine_distance` and
//! `negative_inner_product`, computed exactly wherever they appear. And the pgvector
//! search shape
//!
//! ```sql
//! SELECT ... FROM docs [WHERE ...] ORDER BY embedding <=> $1 LIMIT 10
//! ```
//!
//! on a table whose index uses that distance is rewritten into the same index search as
//! `vector_search('docs', $1, 10)`, never a brute-force scan.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, OrderByKind, SelectItem, SetExpr,
    Statement, TableFactor, visit_expressions_mut,
};

use super::statements::ident_name;
use crate::engine::Core;
use crate::error::Error;
use crate::store::Distance;
use crate::types::{ColumnType, Value, value_from_array};

/// Function names for the operators.
pub(super) fn function_for(op: &BinaryOperator) -> Option<(&'static str, Distance)> {
    match op {
        BinaryOperator::LtDashGt => Some(("l2_distance", Distance::L2)),
        BinaryOperator::Spaceship => Some(("cosine_distance", Distance::Cosine)),
        BinaryOperator::Custom(s) if s == "<#>" => Some(("negative_inner_product", Distance::Dot)),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistanceFunction {
    name: &'static str,
    distance: DistanceKind,
    signature: Signature,
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum DistanceKind {
    L2,
    Cosine,
    Dot,
    /// pgvector's `inner_product`: the plain (positive) dot product.
    InnerProduct,
    /// pgvector's `l1_distance`: the sum of absolute differences.
    L1,
}

impl DistanceFunction {
    pub fn all() -> Vec<DistanceFunction> {
        [
            ("l2_distance", DistanceKind::L2),
            ("cosine_distance", DistanceKind::Cosine),
            ("negative_inner_product", DistanceKind::Dot),
            ("inner_product", DistanceKind::InnerProduct),
            ("l1_distance", DistanceKind::L1),
        ]
        .into_iter()
        .map(|(name, distance)| DistanceFunction {
            name,
            distance,
            signature: Signature::any(2, Volatility::Immutable),
        })
        .collect()
    }
}

/// pgvector's functions of one vector: `vector_dims` and `vector_norm`/`l2_norm`; and
/// `vector_text`, what `embedding::text` becomes: pgvector's text form (`[1,2.5]`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorFunction {
    name: &'static str,
    signature: Signature,
}

impl VectorFunction {
    pub fn all() -> Vec<VectorFunction> {
        [
            "vector_dims",
            "vector_norm",
            "l2_norm",
            VECTOR_TEXT,
            HALFVEC,
            SPARSEVEC,
        ]
        .into_iter()
        .map(|name| VectorFunction {
            name,
            signature: Signature::any(1, Volatility::Immutable),
        })
        .collect()
    }
}

impl ScalarUDFImpl for VectorFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(if self.name == "vector_dims" {
            DataType::Int32
        } else if self.name == VECTOR_TEXT {
            DataType::Utf8
        } else if self.name == HALFVEC {
            ColumnType::HalfVec(0).arrow_type()
        } else if self.name == SPARSEVEC {
            ColumnType::SparseVec(0).arrow_type()
        } else {
            DataType::Float64
        })
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        Ok(Arc::new(if self.name == HALFVEC {
            ColumnType::HalfVec(0).arrow_field(self.name, true)
        } else if self.name == SPARSEVEC {
            ColumnType::SparseVec(0).arrow_field(self.name, true)
        } else {
            datafusion::arrow::datatypes::Field::new(self.name, self.return_type(&[])?, true)
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if self.name == SPARSEVEC {
            // `x::sparsevec`: its canonical text, from a sparsevec's text or a vector.
            let values = (0..n)
                .map(|row| {
                    Ok(match value_from_array(&arrays[0], row)? {
                        Value::Null => Value::Null,
                        Value::Text(t) if crate::types::sparse::looks_sparse(&t) => {
                            Value::Text(crate::types::sparse::SparseVector::parse(&t)?.text())
                        }
                        other => match vector_at_value(other)? {
                            None => Value::Null,
                            Some(v) => Value::Text(
                                crate::types::sparse::SparseVector::from_dense(&v)?.text(),
                            ),
                        },
                    })
                })
                .collect::<Result<Vec<Value>, Error>>()?;
            return Ok(ColumnarValue::Array(crate::types::build_array(
                &ColumnType::SparseVec(0),
                values.iter(),
            )));
        }
        if self.name == HALFVEC {
            // `x::halfvec`: each element rounded to half precision.
            let values = (0..n)
                .map(|row| {
                    Ok(match vector_at(&arrays[0], row)? {
                        None => Value::Null,
                        Some(v) => Value::Vector(crate::types::to_half(v)?),
                    })
                })
                .collect::<Result<Vec<Value>, Error>>()?;
            return Ok(ColumnarValue::Array(crate::types::build_array(
                &ColumnType::HalfVec(0),
                values.iter(),
            )));
        }
        if self.name == VECTOR_TEXT {
            // A text column that only shares a vector column's name stays as it is.
            let texts = (0..n)
                .map(|row| {
                    Ok(match value_from_array(&arrays[0], row)? {
                        Value::Null => None,
                        Value::Vector(v) => Some(crate::types::format_vector(&v)),
                        Value::Text(t) => Some(t),
                        other => Some(
                            crate::sql::params::literal(&other)
                                .trim_matches('\'')
                                .to_string(),
                        ),
                    })
                })
                .collect::<Result<Vec<Option<String>>, Error>>()?;
            return Ok(ColumnarValue::Array(Arc::new(
                datafusion::arrow::array::StringArray::from(texts),
            )));
        }
        let mut values = Vec::with_capacity(n);
        for row in 0..n {
            values.push(vector_at(&arrays[0], row)?);
        }
        Ok(ColumnarValue::Array(if self.name == "vector_dims" {
            Arc::new(
                values
                    .iter()
                    .map(|v| v.as_ref().map(|v| v.len() as i32))
                    .collect::<datafusion::arrow::array::Int32Array>(),
            )
        } else {
            Arc::new(
                values
                    .iter()
                    .map(|v| {
                        v.as_ref()
                            .map(|v| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt())
                    })
                    .collect::<datafusion::arrow::array::Float64Array>(),
            )
        }))
    }
}

/// pgvector's functions that make a vector of a vector: `subvector(v, start, count)`
/// (1-based, clipped to the vector, 22000 when nothing is left) and `l2_normalize(v)`
/// (a zero vector stays zero). A halfvec gives a halfvec.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorToVector {
    name: &'static str,
    signature: Signature,
}

impl VectorToVector {
    pub fn all() -> Vec<VectorToVector> {
        [("subvector", 3), ("l2_normalize", 1)]
            .into_iter()
            .map(|(name, n)| VectorToVector {
                name,
                signature: Signature::any(n, Volatility::Immutable),
            })
            .collect()
    }
}

/// The type of a vector-valued result: a halfvec's is a halfvec, any other's a vector.
pub(crate) fn vector_result_type(
    arg: Option<&datafusion::arrow::datatypes::FieldRef>,
) -> ColumnType {
    if arg.is_some_and(|f| {
        f.metadata()
            .get(crate::types::PG_TYPE_KEY)
            .map(String::as_str)
            == Some(HALFVEC)
    }) {
        ColumnType::HalfVec(0)
    } else {
        ColumnType::Vector(0)
    }
}

/// pgvector's `subvector`: `count` elements from the 1-based `start`, clipped to `v`.
fn subvector(v: &[f32], start: i64, count: i64) -> Result<Vec<f32>, Error> {
    let empty = || Error::DataException("vector must have at least 1 dimension".into());
    if count < 1 {
        return Err(empty());
    }
    let end = start.saturating_add(count).min(v.len() as i64 + 1);
    let start = start.max(1);
    if end <= start {
        return Err(empty());
    }
    Ok(v[(start - 1) as usize..(end - 1) as usize].to_vec())
}

impl ScalarUDFImpl for VectorToVector {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(ColumnType::Vector(0).arrow_type())
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        Ok(Arc::new(
            vector_result_type(args.arg_fields.first()).arrow_field(self.name, true),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let ty = vector_result_type(args.arg_fields.first());
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let int_at = |k: usize, row: usize| -> Result<Option<i64>, Error> {
            match value_from_array(&arrays[k], row)? {
                Value::Null => Ok(None),
                Value::Int(i) => Ok(Some(i)),
                other => Err(Error::DatatypeMismatch(format!(
                    "subvector takes integer bounds, not {other:?}"
                ))),
            }
        };
        let rows = if scalar { 1 } else { n };
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let Some(v) = vector_at(&arrays[0], row)? else {
                out.push(Value::Null);
                continue;
            };
            let made = if self.name == "subvector" {
                match (int_at(1, row)?, int_at(2, row)?) {
                    (Some(start), Some(count)) => Some(subvector(&v, start, count)?),
                    _ => None,
                }
            } else {
                let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                Some(if norm > 0.0 {
                    v.iter().map(|x| (*x as f64 / norm) as f32).collect()
                } else {
                    v
                })
            };
            out.push(match made {
                None => Value::Null,
                Some(v) if ty == ColumnType::HalfVec(0) => Value::Vector(crate::types::to_half(v)?),
                Some(v) => Value::Vector(v),
            });
        }
        let array = crate::types::build_array(&ty, out.iter());
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// pgvector's functions of bit strings: `hamming_distance` and `jaccard_distance` (what
/// `<~>` and `<%>` become), and `binary_quantize(vector)`, a bit per element (1 where it
/// is positive). Bit strings are their `0`s and `1`s.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BitFunction {
    name: &'static str,
    signature: Signature,
}

impl BitFunction {
    pub fn all() -> Vec<BitFunction> {
        [
            ("hamming_distance", 2),
            ("jaccard_distance", 2),
            ("binary_quantize", 1),
        ]
        .into_iter()
        .map(|(name, n)| BitFunction {
            name,
            signature: Signature::any(n, Volatility::Immutable),
        })
        .collect()
    }
}

/// A bit string argument: its `0`s and `1`s (text as Postgres reads a bit string).
fn bits_at(arr: &ArrayRef, row: usize) -> Result<Option<String>, Error> {
    match value_from_array(arr, row)? {
        Value::Null => Ok(None),
        Value::Text(t) => crate::types::parse_bits(&t).map(Some),
        other => Err(Error::DatatypeMismatch(format!(
            "a bit string was expected, got {other:?}"
        ))),
    }
}

impl ScalarUDFImpl for BitFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(if self.name == "binary_quantize" {
            DataType::Utf8
        } else {
            DataType::Float64
        })
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        Ok(Arc::new(if self.name == "binary_quantize" {
            ColumnType::Bit(0).arrow_field(self.name, true)
        } else {
            datafusion::arrow::datatypes::Field::new(self.name, DataType::Float64, true)
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if self.name == "binary_quantize" {
            let out = (0..n)
                .map(|row| {
                    Ok(vector_at(&arrays[0], row)?.map(|v| {
                        v.iter()
                            .map(|x| if *x > 0.0 { '1' } else { '0' })
                            .collect::<String>()
                    }))
                })
                .collect::<Result<Vec<Option<String>>, Error>>()?;
            return Ok(ColumnarValue::Array(Arc::new(
                datafusion::arrow::array::StringArray::from(out),
            )));
        }
        let mut out = Float64Builder::with_capacity(n);
        for row in 0..n {
            match (bits_at(&arrays[0], row)?, bits_at(&arrays[1], row)?) {
                (Some(a), Some(b)) => {
                    if a.len() != b.len() {
                        return Err(Error::DataException(format!(
                            "different bit lengths {} and {}",
                            a.len(),
                            b.len()
                        ))
                        .into());
                    }
                    let pairs = a.bytes().zip(b.bytes());
                    out.append_value(if self.name == "hamming_distance" {
                        pairs.filter(|(x, y)| x != y).count() as f64
                    } else {
                        let (mut both, mut either) = (0usize, 0usize);
                        for (x, y) in pairs {
                            both += usize::from(x == b'1' && y == b'1');
                            either += usize::from(x == b'1' || y == b'1');
                        }
                        if both == 0 {
                            1.0
                        } else {
                            1.0 - both as f64 / either as f64
                        }
                    });
                }
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

const VECTOR_TEXT: &str = "vector_text";
/// What `x::halfvec` becomes (but for a parameter, which the column it is written to
/// rounds).
const HALFVEC: &str = crate::types::HALFVEC;
/// What `x::sparsevec` becomes.
const SPARSEVEC: &str = crate::types::SPARSEVEC;

fn vector_at(arr: &ArrayRef, row: usize) -> Result<Option<Vec<f32>>, Error> {
    vector_at_value(value_from_array(arr, row)?)
}

fn vector_at_value(v: Value) -> Result<Option<Vec<f32>>, Error> {
    Ok(match v {
        Value::Null => None,
        Value::Text(s) => Some(crate::types::sparse::dense_of_text(&s)?),
        v @ (Value::Vector(_) | Value::IntArray(_) | Value::Array(_)) => {
            Some(crate::types::vector_of(v)?)
        }
        other => {
            return Err(Error::DatatypeMismatch(format!(
                "a distance needs two vectors, got {other:?}"
            )));
        }
    })
}

impl ScalarUDFImpl for DistanceFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        // A constant operand (the query vector) is read once, not once per row.
        let arrays = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => s.to_array_of_size(1),
                ColumnarValue::Array(a) => Ok(a.clone()),
            })
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let (distance, sign) = match self.distance {
            DistanceKind::L2 | DistanceKind::L1 => (Distance::L2, 1.0),
            DistanceKind::Cosine => (Distance::Cosine, 1.0),
            DistanceKind::Dot => (Distance::Dot, 1.0),
            DistanceKind::InnerProduct => (Distance::Dot, -1.0),
        };
        // pgvector takes a halfvec's other operand as a halfvec too.
        let half = args.arg_fields.iter().any(|f| {
            f.metadata()
                .get(crate::types::PG_TYPE_KEY)
                .is_some_and(|t| t == HALFVEC)
        });
        let at = |i: usize, row: usize| -> Result<Option<Vec<f32>>, Error> {
            match vector_at(&arrays[i], row)? {
                Some(v) if half => Ok(Some(crate::types::to_half(v)?)),
                other => Ok(other),
            }
        };
        let constant = |i: usize| -> Result<Option<Option<Vec<f32>>>, Error> {
            Ok(match args.args[i] {
                ColumnarValue::Scalar(_) => Some(at(i, 0)?),
                ColumnarValue::Array(_) => None,
            })
        };
        let (first, second) = (constant(0)?, constant(1)?);
        let rows = if scalar { 1 } else { n };
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            let (a_row, b_row);
            let a = match &first {
                Some(c) => c.as_deref(),
                None => {
                    a_row = at(0, row)?;
                    a_row.as_deref()
                }
            };
            let b = match &second {
                Some(c) => c.as_deref(),
                None => {
                    b_row = at(1, row)?;
                    b_row.as_deref()
                }
            };
            match (a, b) {
                (Some(a), Some(b)) => {
                    if a.len() != b.len() {
                        return Err(Error::DataException(format!(
                            "different vector dimensions {} and {}",
                            a.len(),
                            b.len()
                        ))
                        .into());
                    }
                    out.append_value(if self.distance == DistanceKind::L1 {
                        a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).sum()
                    } else {
                        sign * distance.exact(a, b)
                    });
                }
                _ => out.append_null(),
            }
        }
        let arr: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&arr, 0)?)
        } else {
            ColumnarValue::Array(arr)
        })
    }
}

pub(crate) fn call(name: &str, args: Vec<SqlExpr>) -> SqlExpr {
    SqlExpr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Rewrite a statement: first the index-search shape, then every remaining operator.
pub fn rewrite(stmt: &mut Statement, shared: &Core) {
    // In DDL a column default keeps its text as written.
    let ddl = matches!(
        stmt,
        Statement::CreateTable(_) | Statement::AlterTable(_) | Statement::CreateIndex(_)
    );
    // Every query of the statement: a search may be a CTE or a subquery.
    struct Searches<'a>(&'a Core);
    impl datafusion::sql::sqlparser::ast::VisitorMut for Searches<'_> {
        type Break = ();
        fn post_visit_query(
            &mut self,
            q: &mut datafusion::sql::sqlparser::ast::Query,
        ) -> ControlFlow<()> {
            rewrite_search(q, self.0);
            ControlFlow::Continue(())
        }
    }
    if matches!(stmt, Statement::Query(_) | Statement::Explain { .. }) {
        let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(stmt, &mut Searches(shared));
    }
    let _ = visit_expressions_mut(stmt, |e| {
        // `'[1,2,3]'::vector` (or `CAST(... AS vector(3))`, as JDBC users write it): the
        // function `vector(x [, n])`, a typed vector (Arrow cannot cast text to a float
        // list). A parameter's cast goes: the column or argument it is written to reads
        // its text; so does a default's in DDL.
        if let SqlExpr::Cast {
            expr,
            data_type: datafusion::sql::sqlparser::ast::DataType::Custom(name, modifiers),
            ..
        } = e
            && let Some(kind) = name.0.last().and_then(|p| p.as_ident())
        {
            let placeholder = matches!(**expr, SqlExpr::Value(ref v) if matches!(v.value, datafusion::sql::sqlparser::ast::Value::Placeholder(_)));
            let other = [HALFVEC, SPARSEVEC]
                .into_iter()
                .find(|k| kind.value.eq_ignore_ascii_case(k));
            let vector = kind.value.eq_ignore_ascii_case(super::vector_ops::VECTOR);
            if (vector && (placeholder || ddl)) || (other.is_some() && placeholder) {
                *e = (**expr).clone();
            } else if vector {
                let mut args = vec![(**expr).clone()];
                if let [n] = modifiers.as_slice()
                    && n.parse::<u32>().is_ok()
                {
                    args.push(SqlExpr::Value(
                        datafusion::sql::sqlparser::ast::Value::Number(n.clone(), false).into(),
                    ));
                }
                *e = call(super::vector_ops::VECTOR, args);
            } else if let Some(k) = other {
                *e = call(k, vec![(**expr).clone()]);
            }
        }
        // `embedding::text` (or `CAST(... AS text/varchar)`) of a vector column:
        // pgvector's text form, not Arrow's list notation.
        if let SqlExpr::Cast {
            expr, data_type, ..
        } = e
            && matches!(
                data_type,
                datafusion::sql::sqlparser::ast::DataType::Text
                    | datafusion::sql::sqlparser::ast::DataType::Varchar(_)
            )
            && vector_valued(expr, shared)
        {
            *e = call(VECTOR_TEXT, vec![(**expr).clone()]);
        }
        if let SqlExpr::BinaryOp { left, op, right } = e
            && let Some((name, _)) = function_for(op)
        {
            *e = call(name, vec![(**left).clone(), (**right).clone()]);
        }
        // `avg(embedding)`, `sum(embedding)` of a vector column: pgvector's aggregates.
        if let SqlExpr::Function(f) = e
            && let [name] = f.name.0.as_slice()
            && let Some(name) = name.as_ident()
            && let Some(agg) = match name.value.to_ascii_lowercase().as_str() {
                "avg" => Some(super::vector_agg::AVG),
                "sum" => Some(super::vector_agg::SUM),
                _ => None,
            }
            && let FunctionArguments::List(list) = &f.args
            && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice()
            && column_name(arg).is_some_and(|c| is_vector_column(shared, &c))
        {
            f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(agg))]);
        }
        // `B'0101'`, Postgres' bit-string literal: its digits, which a bit column and
        // the bit functions read.
        if let SqlExpr::Value(v) = e
            && let datafusion::sql::sqlparser::ast::Value::SingleQuotedByteStringLiteral(bits) =
                &v.value
        {
            v.value = datafusion::sql::sqlparser::ast::Value::SingleQuotedString(bits.clone());
        }
        // The operators no index serves: computed exactly wherever they appear.
        if let SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Custom(op),
            right,
        } = e
            && let Some(name) = match op.as_str() {
                "<~>" => Some("hamming_distance"),
                "<%>" => Some("jaccard_distance"),
                // `<+>`, as `l1_operator` spells it.
                "<~+>" => Some("l1_distance"),
                _ => None,
            }
        {
            *e = call(name, vec![(**left).clone(), (**right).clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// For EXPLAIN: why a query's `ORDER BY col <op> q LIMIT k` on a vector or bit column
/// of one table was not made an index search, and so reads every row and ranks it
/// exactly: the index serves no such distance, holds no such column, or ranks the
/// column by another distance. `None` for any other query.
pub fn exact_order_note(stmt: &Statement, shared: &Core) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Statement::Explain { statement, .. } = stmt else {
        return None;
    };
    let Statement::Query(q) = statement.as_ref() else {
        return None;
    };
    q.limit_clause.as_ref()?;
    let OrderByKind::Expressions(items) = &q.order_by.as_ref()?.kind else {
        return None;
    };
    let SqlExpr::Function(f) = &items.first()?.expr else {
        return None;
    };
    let function = f.name.to_string().to_ascii_lowercase();
    let op = match function.as_str() {
        "l2_distance" => Some(Distance::L2),
        "cosine_distance" => Some(Distance::Cosine),
        "negative_inner_product" => Some(Distance::Dot),
        "l1_distance" | "hamming_distance" | "jaccard_distance" => None,
        _ => return None,
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let def = shared
        .table(&super::statements::table_name(name).ok()?)
        .ok()?;
    let c = list.args.iter().find_map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => def.column_index(&column_name(e)?),
        _ => None,
    })?;
    let column = &def.columns[c];
    let why = match (op, def.distance_of(c)) {
        (None, _) => format!(
            "the vector index serves no {} ordering",
            function.trim_end_matches("_distance").replace("l1", "L1")
        ),
        (Some(_), None) if column.ty.is_vector() => match column.ty {
            // Out of the index by sparsevec_l2_ops, a table's L2 distance, or a table
            // made before sparsevec columns were indexed.
            ColumnType::SparseVec(_) => format!(
                "sparsevec column \"{}\" is not in the vector index, which cannot rank a sparsevec by L2 distance (an index with sparsevec_ip_ops or sparsevec_cosine_ops puts it there)",
                column.name
            ),
            _ => format!(
                "column \"{}\" has no declared dimension, so the vector index does not hold it",
                column.name
            ),
        },
        (Some(_), None) => return None,
        (Some(op), Some(d)) if op != d => format!(
            "the vector index ranks column \"{}\" by {} distance, not {} (an index with the operator class of {} distance makes it)",
            column.name,
            d.name(),
            op.name(),
            op.name()
        ),
        (Some(_), Some(_)) => return None,
    };
    Some(format!(
        "ORDER BY {function}({}, ...) reads every row of \"{}\" and ranks them exactly: {why}",
        column.name, def.name
    ))
}

/// Whether an expression is (by its form) a vector: a vector column, a function that
/// makes one, or pgvector's `+`, `-`, `*` or `||` of such.
fn vector_valued(e: &SqlExpr, shared: &Core) -> bool {
    const MAKERS: [&str; 7] = [
        HALFVEC,
        SPARSEVEC,
        super::vector_ops::VECTOR,
        super::vector_agg::AVG,
        super::vector_agg::SUM,
        "subvector",
        "l2_normalize",
    ];
    match e {
        SqlExpr::Nested(inner) => vector_valued(inner, shared),
        SqlExpr::Function(f) => MAKERS.contains(&f.name.to_string().as_str()),
        SqlExpr::BinaryOp {
            left,
            op:
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::StringConcat,
            right,
        } => vector_valued(left, shared) || vector_valued(right, shared),
        _ => column_name(e).is_some_and(|c| is_vector_column(shared, &c)),
    }
}

/// Whether some table's vector column has this name.
fn is_vector_column(shared: &Core, name: &str) -> bool {
    shared
        .tables()
        .iter()
        .any(|d| d.vector_columns().any(|c| d.columns[c].name == name))
}

fn column_name(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Identifier(i) => Some(ident_name(i)),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(ident_name),
        _ => None,
    }
}

/// `SELECT .. FROM t [WHERE ..] ORDER BY vec <op> q [, ..] LIMIT k` on one table whose
/// index distance matches `<op>` becomes a search of `vector_search('t', q, k)`; over a
/// join of `t` with a table by that table's key, see [`super::joined_search`].
fn rewrite_search(q: &mut datafusion::sql::sqlparser::ast::Query, shared: &Core) {
    use datafusion::sql::sqlparser::ast::{LimitClause, Value as SqlValue};
    let Some(LimitClause::LimitOffset {
        limit: Some(limit),
        offset: None,
        ..
    }) = &q.limit_clause
    else {
        return;
    };
    // A number, or a parameter (bound before the statement runs), or either cast
    // (`LIMIT $3::INTEGER`, as SQLAlchemy writes it).
    let value = match limit {
        SqlExpr::Cast { expr, .. } => expr.as_ref(),
        other => other,
    };
    let SqlExpr::Value(lv) = value else { return };
    if !matches!(lv.value, SqlValue::Number(..) | SqlValue::Placeholder(_)) {
        return;
    }
    let k = limit.to_string();
    let Some(order) = &mut q.order_by else { return };
    let OrderByKind::Expressions(items) = &mut order.kind else {
        return;
    };
    let Some(first) = items.first_mut() else {
        return;
    };
    if first.options.asc == Some(false) {
        return;
    }
    // `ORDER BY distance` naming `vec <op> q AS distance` of the select list (an output
    // column's name comes before an input column's, as in Postgres), as LangChain's
    // PGVector writes it: ordered by the operator itself.
    if let SqlExpr::Identifier(name) = &first.expr
        && let SetExpr::Select(select) = q.body.as_ref()
        && let Some(op_expr) = select.projection.iter().find_map(|item| match item {
            SelectItem::ExprWithAlias {
                expr: e @ SqlExpr::BinaryOp { op, .. },
                alias,
            } if ident_name(alias) == ident_name(name) && function_for(op).is_some() => {
                Some(e.clone())
            }
            _ => None,
        })
    {
        first.expr = op_expr;
    }
    let SqlExpr::BinaryOp { left, op, right } = &first.expr else {
        return;
    };
    let Some((_, op_distance)) = function_for(op) else {
        return;
    };
    let SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    if select.from.len() != 1 || select.distinct.is_some() {
        return;
    }
    if !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
    {
        return;
    }
    match select.from[0].joins.len() {
        0 => {}
        1 => {
            super::joined_search::rewrite(select, first, op_distance, &k, shared);
            return;
        }
        _ => return,
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = &select.from[0].relation
    else {
        return;
    };
    let Ok(table) = super::statements::table_name(name) else {
        return;
    };
    let Ok(def) = shared.table(&table) else {
        return;
    };
    // The operator's column must be one the index holds, by the operator's distance.
    let indexed = |e: &SqlExpr| {
        let c = def.column_index(&column_name(e)?)?;
        (def.distance_of(c) == Some(op_distance)).then_some(c)
    };
    let (vector_col, query_expr) = if let Some(c) = indexed(left) {
        (c, (**right).clone())
    } else if let Some(c) = indexed(right) {
        (c, (**left).clone())
    } else {
        return;
    };
    // The search replaces the table; `distance` replaces the operator expression.
    let alias = alias
        .clone()
        .unwrap_or_else(|| datafusion::sql::sqlparser::ast::TableAlias {
            explicit: true,
            name: Ident::new(def.relname()),
            columns: vec![],
            at: None,
        });
    // A table with several vector columns names the one searched.
    let column = if def.vector_columns().nth(1).is_some() {
        format!("'{}', ", def.columns[vector_col].name.replace('\'', "''"))
    } else {
        String::new()
    };
    let search = format!(
        "vector_search('{}', {column}{}, {k})",
        table.replace('\'', "''"),
        query_expr
    );
    let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(&format!("SELECT 1 FROM {search}"))
    .and_then(|mut p| p.parse_query()) else {
        return;
    };
    let SetExpr::Select(ps) = parsed.body.as_mut() else {
        return;
    };
    let mut relation = ps.from.remove(0).relation;
    if let TableFactor::Table { alias: a, .. } = &mut relation {
        *a = Some(search_alias(&def, alias.name.clone()));
    }
    let op_expr = first.expr.clone();
    first.expr = SqlExpr::CompoundIdentifier(vec![
        alias.name.clone(),
        Ident::with_quote('"', SEARCH_DISTANCE),
    ]);
    select.from[0].relation = relation;
    // `SELECT *` must not grow a distance column.
    let cols = visible_columns(&def, &alias.name);
    read_distance(select, &op_expr, &alias.name, |item| match item {
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Some(cols.clone()),
        _ => None,
    });
}

/// What a rewritten search's distance is named: the table searched has no `distance`
/// column, so the statement may name something else so (`... AS distance`).
pub(super) const SEARCH_DISTANCE: &str = "vectorgate_distance";

/// The alias of a search that replaces table `def`: its name, and its columns' names with
/// the distance as [`SEARCH_DISTANCE`].
pub(super) fn search_alias(
    def: &crate::store::TableDef,
    name: Ident,
) -> datafusion::sql::sqlparser::ast::TableAlias {
    use datafusion::sql::sqlparser::ast::TableAliasColumnDef;
    let mut columns: Vec<TableAliasColumnDef> = super::tables::table_schema(def)
        .fields()
        .iter()
        .map(|f| TableAliasColumnDef {
            name: Ident::with_quote('"', f.name()),
            data_type: None,
        })
        .collect();
    columns.push(TableAliasColumnDef {
        name: Ident::with_quote('"', SEARCH_DISTANCE),
        data_type: None,
    });
    datafusion::sql::sqlparser::ast::TableAlias {
        explicit: true,
        name,
        columns,
        at: None,
    }
}

/// A table's visible columns, qualified by `alias`, as select items.
pub(super) fn visible_columns(def: &crate::store::TableDef, alias: &Ident) -> Vec<SelectItem> {
    def.columns
        .iter()
        .filter(|c| !c.hidden())
        .map(|c| {
            SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(vec![
                alias.clone(),
                Ident::with_quote('"', &c.name),
            ]))
        })
        .collect()
}

/// The select list of a search: the operator expression `op_expr` reads the search's
/// `distance` (of the relation `alias`); `expand` gives the columns a wildcard stands for.
pub(super) fn read_distance(
    select: &mut datafusion::sql::sqlparser::ast::Select,
    op_expr: &SqlExpr,
    alias: &Ident,
    expand: impl Fn(&SelectItem) -> Option<Vec<SelectItem>>,
) {
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in select.projection.drain(..) {
        if let Some(cols) = expand(&item) {
            projection.extend(cols);
            continue;
        }
        match item {
            SelectItem::UnnamedExpr(e) if &e == op_expr => {
                projection.push(SelectItem::ExprWithAlias {
                    expr: SqlExpr::CompoundIdentifier(vec![
                        alias.clone(),
                        Ident::with_quote('"', SEARCH_DISTANCE),
                    ]),
                    alias: Ident::new("?column?"),
                })
            }
            SelectItem::ExprWithAlias { expr, alias: a } if &expr == op_expr => {
                projection.push(SelectItem::ExprWithAlias {
                    expr: SqlExpr::CompoundIdentifier(vec![
                        alias.clone(),
                        Ident::with_quote('"', SEARCH_DISTANCE),
                    ]),
                    alias: a,
                })
            }
            other => projection.push(other),
        }
    }
    select.projection = projection;
}

/// The catalog names of the tables a statement reads ([`crate::store::qualified`]);
/// a system schema's relation by its own name.
pub fn relations(stmt: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let _ = datafusion::sql::sqlparser::ast::visit_relations(stmt, |r| {
        match super::statements::table_name(r) {
            Ok(name) => out.push(name),
            Err(_) => out.extend(r.0.last().and_then(|p| p.as_ident()).map(ident_name)),
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// Whether a subquery refers to the outer query: a qualified column whose qualifier is
/// not a table of the subquery itself.
fn correlated(q: &datafusion::sql::sqlparser::ast::Query) -> bool {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    struct Outer<'a>(&'a std::collections::HashSet<String>, bool);
    impl Visitor for Outer<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> ControlFlow<()> {
            if let SqlExpr::CompoundIdentifier(parts) = e
                && parts.len() >= 2
                && !self.0.contains(&ident_name(&parts[parts.len() - 2]))
            {
                self.1 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let own = own_relations(sel);
    let mut v = Outer(&own, false);
    let _ = q.visit(&mut v);
    v.1
}

/// The names and aliases of the tables a SELECT reads.
fn own_relations(
    sel: &datafusion::sql::sqlparser::ast::Select,
) -> std::collections::HashSet<String> {
    use datafusion::sql::sqlparser::ast::TableFactor;
    let mut own = std::collections::HashSet::new();
    for twj in &sel.from {
        for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            match f {
                // An alias hides the table's name (`FROM pg_type te WHERE oid =
                // pg_type.typelem` reads the outer query's pg_type).
                TableFactor::Table { name, alias, .. } => match alias {
                    Some(a) => {
                        own.insert(ident_name(&a.name));
                    }
                    None => {
                        if let Some(n) = name.0.last().and_then(|p| p.as_ident()) {
                            own.insert(ident_name(n));
                        }
                    }
                },
                TableFactor::Derived { alias: Some(a), .. }
                | TableFactor::UNNEST { alias: Some(a), .. }
                | TableFactor::Function { alias: Some(a), .. } => {
                    own.insert(ident_name(&a.name));
                }
                _ => {}
            }
        }
    }
    own
}

/// Does `e` read only columns of the outer query (qualified by a name not in `own`)?
fn outer_only(e: &SqlExpr, own: &std::collections::HashSet<String>) -> bool {
    let (mut outer, mut inner) = (false, false);
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        match x {
            SqlExpr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                if own.contains(&ident_name(&parts[parts.len() - 2])) {
                    inner = true;
                } else {
                    outer = true;
                }
            }
            SqlExpr::Identifier(_) | SqlExpr::Subquery(_) => inner = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    outer && !inner
}

pub(super) fn conjuncts(e: SqlExpr, out: &mut Vec<SqlExpr>) {
    match e {
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        SqlExpr::Nested(inner)
            if matches!(
                *inner,
                SqlExpr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

pub(super) fn and_all(mut parts: Vec<SqlExpr>) -> Option<SqlExpr> {
    let first = if parts.is_empty() {
        return None;
    } else {
        parts.remove(0)
    };
    Some(parts.into_iter().fold(first, |acc, p| SqlExpr::BinaryOp {
        left: Box::new(acc),
        op: BinaryOperator::And,
        right: Box::new(p),
    }))
}

/// In a statement over the catalog only, a correlated scalar subquery that is not an
/// aggregate (SQLAlchemy's column reflection: `(SELECT pg_get_expr(..) FROM pg_attrdef
/// WHERE adrelid = pg_attribute.attrelid ...)`) is planned as `max(...)` of its one
/// value: DataFusion decorrelates only aggregated scalar subqueries. For the catalog's
/// one-row lookups the answer is the same. Conditions of its WHERE that read only the
/// outer row move out as `CASE WHEN cond THEN (subquery) END` (the same value: an
/// aggregate over no rows is NULL), which DataFusion can decorrelate.
pub fn aggregate_catalog_subqueries(stmt: &mut Statement, user_tables: &[String]) {
    use datafusion::sql::sqlparser::ast::SelectItem;
    if relations(stmt).iter().any(|r| user_tables.contains(r)) {
        return;
    }
    const AGGREGATES: [&str; 10] = [
        "array_agg",
        "count",
        "max",
        "min",
        "sum",
        "avg",
        "string_agg",
        "bool_and",
        "bool_or",
        "json_agg",
    ];
    let _ = visit_expressions_mut(stmt, |e| {
        // A scalar subquery may meet its outer row through a bare column name too
        // (`(SELECT relkind FROM pg_class WHERE oid = typrelid)`, pg_dump's), which this
        // pass cannot tell from its own columns; one that selects a plain column with
        // no ORDER BY (nor a LIMIT but the compatibility parser's `LIMIT 1`) returns the
        // same under max() (it may return one row).
        let plain = |q: &datafusion::sql::sqlparser::ast::Query| {
            q.order_by.is_none()
                && q.limit_clause
                    .as_ref()
                    .is_none_or(|l| l.to_string().trim().eq_ignore_ascii_case("LIMIT 1"))
                && matches!(q.body.as_ref(), SetExpr::Select(sel) if matches!(
                    sel.projection.as_slice(),
                    [SelectItem::UnnamedExpr(SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_))]
                ))
        };
        if let SqlExpr::Subquery(q) = e
            && (correlated(q) || plain(q))
            && let SetExpr::Select(sel) = q.body.as_mut()
            && matches!(&sel.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
            && let [SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }] =
                sel.projection.as_mut_slice()
            && !matches!(x, SqlExpr::Function(f) if f.name.0.last().and_then(|p| p.as_ident())
                .is_some_and(|i| AGGREGATES.contains(&i.value.to_ascii_lowercase().as_str())))
        {
            *x = call("max", vec![x.clone()]);
            // One row already: a LIMIT 1 above the aggregate would stop its decorrelation.
            if q.limit_clause
                .as_ref()
                .is_some_and(|l| l.to_string().trim().eq_ignore_ascii_case("LIMIT 1"))
            {
                q.limit_clause = None;
            }
        }
        if let SqlExpr::Subquery(q) = e
            && let SetExpr::Select(sel) = q.body.as_mut()
            && let Some(selection) = sel.selection.take()
        {
            let own = own_relations(sel);
            let mut parts = Vec::new();
            conjuncts(selection, &mut parts);
            let (outer, rest): (Vec<_>, Vec<_>) =
                parts.into_iter().partition(|p| outer_only(p, &own));
            sel.selection = and_all(rest);
            if let Some(cond) = and_all(outer) {
                let sub = std::mem::replace(
                    e,
                    SqlExpr::Value(datafusion::sql::sqlparser::ast::Value::Null.into()),
                );
                *e = SqlExpr::Case {
                    case_token: datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                    end_token: datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                    operand: None,
                    conditions: vec![datafusion::sql::sqlparser::ast::CaseWhen {
                        condition: cond,
                        result: sub,
                    }],
                    else_result: None,
                };
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The elements of a catalog key column kept as text, `1 2` (`int2vector`) or `{1,2}`
/// (an `int2[]` such as `pg_constraint.conkey`): `string_to_array` of it, normalised.
fn int2_elements(e: SqlExpr) -> SqlExpr {
    use datafusion::sql::sqlparser::ast::Value;
    let text = |s: &str| SqlExpr::Value(Value::SingleQuotedString(s.into()).into());
    let spaced = call("replace", vec![e, text(","), text(" ")]);
    let bare = call("btrim", vec![spaced, text("{}")]);
    call("string_to_array", vec![bare, text(" ")])
}

/// `unnest` of a catalog key column's elements as `smallint`s.
fn unnest_int2(e: SqlExpr) -> SqlExpr {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, CastKind, DataType as T};
    call(
        "unnest",
        vec![SqlExpr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(int2_elements(e)),
            data_type: T::Array(ArrayElemTypeDef::SquareBracket(
                Box::new(T::SmallInt(None)),
                None,
            )),
            array: false,
            format: None,
        }],
    )
}

/// `pg_index.indkey` and its kin are `int2vector` in Postgres (an array that prints as
/// `1 2`); the catalog emulation keeps the printed text. `unnest(indkey)` and
/// `generate_subscripts(indkey, 1)`, as SQLAlchemy's key and index reflection writes
/// them, become the same over `string_to_array(indkey, ' ')`.
pub fn int2vector_functions(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::Value;
    const INT2VECTORS: [&str; 6] = [
        "indkey",
        "indclass",
        "indoption",
        "indcollation",
        "conkey",
        "confkey",
    ];
    let int2vector = |e: &SqlExpr| match e {
        SqlExpr::Identifier(i) => INT2VECTORS.contains(&ident_name(i).as_str()),
        SqlExpr::CompoundIdentifier(p) => p
            .last()
            .is_some_and(|i| INT2VECTORS.contains(&ident_name(i).as_str())),
        _ => false,
    };
    let split = int2_elements;
    let number = |n: i64| SqlExpr::Value(Value::Number(n.to_string(), false).into());
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Function(f) = e
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident()).map(ident_name)
            && let FunctionArguments::List(list) = &f.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first()
            && int2vector(arg)
        {
            let arg = arg.clone();
            match name.as_str() {
                "unnest" if list.args.len() == 1 => {
                    *e = unnest_int2(arg);
                }
                "generate_subscripts" => {
                    let length = call("array_length", vec![split(arg), number(1)]);
                    *e = call(
                        "unnest",
                        vec![call("generate_series", vec![number(1), length])],
                    );
                }
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Does `sql` contain `needle` (ASCII, any case)? Without allocating.
/// pgvector's `<+>` (L1 distance), which the parser does not take as an operator, spelt
/// `<~+>`, which it does (outside string literals, quoted names and comments).
pub fn l1_operator(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains("<+>") {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 4);
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        let skip = match c {
            '\'' | '"' => rest[1..].find(c).map_or(rest.len(), |end| end + 2),
            '-' if rest.starts_with("--") => rest.find('\n').unwrap_or(rest.len()),
            '<' if rest.starts_with("<+>") => {
                out.push_str("<~+>");
                rest = &rest[3..];
                continue;
            }
            _ => c.len_utf8(),
        };
        out.push_str(&rest[..skip]);
        rest = &rest[skip..];
    }
    std::borrow::Cow::Owned(out)
}

pub fn mentions(sql: &str, needle: &str) -> bool {
    let (hay, needle) = (sql.as_bytes(), needle.as_bytes());
    let Some(&first) = needle.first() else {
        return true;
    };
    // Only where the first byte matches (found by memchr, fast over the long vector
    // literals of a bulk INSERT) is the rest compared.
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), hay).any(|i| {
        hay.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// `'pg_catalog.array_in'::regproc`, as pgjdbc compares `pg_type.typinput` with it: the
/// catalog keeps function names as text, so the literal becomes the bare name, as text.
/// Done on the SQL text, before the compatibility parser turns the cast into an oid
/// lookup.
pub fn regproc_literals(sql: &str) -> std::borrow::Cow<'_, str> {
    const CAST: &str = "'::regproc";
    if !mentions(sql, CAST) {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(end) = rest.to_ascii_lowercase().find(CAST) {
        // The literal's opening quote: the nearest quote before the closing one.
        let Some(start) = rest[..end].rfind('\'') else {
            break;
        };
        let name = &rest[start + 1..end];
        let bare = name.rsplit('.').next().unwrap_or(name);
        out.push_str(&rest[..start]);
        out.push('\'');
        out.push_str(bare);
        out.push('\'');
        rest = &rest[end + CAST.len()..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// psql's `\d` reads a column's default with a correlated subquery of `pg_attrdef`,
/// which the catalog emulation answers with NULL: it becomes a call of
/// `vg_column_default(a.attrelid, a.attnum)`, which knows the proxy's tables' defaults.
pub fn attrdef_subquery(sql: &str) -> std::borrow::Cow<'_, str> {
    const START: &str = "(select pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)";
    const WHOLE: &str = "(select pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) from pg_catalog.pg_attrdef d where d.adrelid = a.attrelid and d.adnum = a.attnum and a.atthasdef)";
    let lower = sql.to_ascii_lowercase();
    let Some(start) = lower.find(START) else {
        return std::borrow::Cow::Borrowed(sql);
    };
    // The subquery's closing parenthesis.
    let mut depth = 0;
    let mut end = None;
    for (i, ch) in lower[start..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(start + i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(end) = end else {
        return std::borrow::Cow::Borrowed(sql);
    };
    let normal = lower[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if normal != WHOLE {
        return std::borrow::Cow::Borrowed(sql);
    }
    std::borrow::Cow::Owned(format!(
        "{}{}(a.attrelid, a.attnum){}",
        &sql[..start],
        super::catalog::COLUMN_DEFAULT,
        &sql[end..]
    ))
}

/// psql's `\d` of a table with foreign keys: the trigger list's parent-trigger column
/// (a `WITH ORDINALITY` subquery, only for partitions) is NULL here, and the foreign
/// keys' `conrelid::pg_catalog.regclass` (a name in Postgres, an OID in the emulation)
/// becomes the table's name.
pub fn psql_foreign_keys(sql: &str) -> std::borrow::Cow<'_, str> {
    const TRIGGERS: &str = "case when t.tgparentid != 0 then";
    const REGCLASS: &str = "conrelid::pg_catalog.regclass as ontable";
    if !sql.contains("tgparentid") && !sql.contains("ontable") {
        return std::borrow::Cow::Borrowed(sql);
    }
    let lower = sql.to_ascii_lowercase();
    if let Some(start) = lower.find(TRIGGERS)
        && let Some(len) = lower[start..].find("end as parent")
    {
        let end = start + len + "end as parent".len();
        return std::borrow::Cow::Owned(format!("{}NULL AS parent{}", &sql[..start], &sql[end..]));
    }
    if let Some(start) = lower.find(REGCLASS) {
        return std::borrow::Cow::Owned(format!(
            "{}{}(conrelid) AS ontable{}",
            &sql[..start],
            super::catalog::RELATION_NAME,
            &sql[start + REGCLASS.len()..]
        ));
    }
    std::borrow::Cow::Borrowed(sql)
}

/// `information_schema._pg_expandarray(indkey)`, as pgjdbc's `getPrimaryKeys` writes it:
/// a set-returning function of `(x, n)` records, read as `(...).n` and `(keys).x`. Over an
/// `int2vector` column it becomes two zipped `unnest`s: of the elements (`x`) and of their
/// positions (`n`); `(column).x` of its result is the column itself.
pub fn pg_expandarray(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Value};
    fn expand_arg(e: &SqlExpr) -> Option<SqlExpr> {
        let SqlExpr::Function(f) = e else { return None };
        if !f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray"))
        {
            return None;
        }
        let FunctionArguments::List(list) = &f.args else {
            return None;
        };
        match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some(arg.clone()),
            _ => None,
        }
    }
    let split = int2_elements;
    let elements = unnest_int2;
    let positions = |e: SqlExpr| {
        let one = SqlExpr::Value(Value::Number("1".into(), false).into());
        let length = call("array_length", vec![split(e), one.clone()]);
        call("unnest", vec![call("generate_series", vec![one, length])])
    };
    // Field access first (the visit is bottom-up, so the function inside is still whole).
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::CompoundFieldAccess { root, access_chain } = e
            && let [AccessExpr::Dot(SqlExpr::Identifier(field))] = access_chain.as_slice()
        {
            let field = field.value.to_ascii_lowercase();
            let inner = match root.as_ref() {
                SqlExpr::Nested(x) => x.as_ref(),
                other => other,
            };
            if let Some(arg) = expand_arg(inner) {
                *e = if field == "n" {
                    positions(arg)
                } else {
                    elements(arg)
                };
            } else if field == "x"
                && matches!(
                    inner,
                    SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)
                )
            {
                *e = inner.clone();
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(stmt, |e| {
        if let Some(arg) = expand_arg(e) {
            *e = elements(arg);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `typname[0]`: a catalog `name` column (`typname`, `relname`, ...) read as the array
/// of its characters, counted from 0, as Postgres lets `name` be subscripted (pg_dump
/// finds array types by `typname[0] = '_'`): `substr(typname, 1, 1)`.
pub fn name_subscripts(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Subscript, Value};
    let _ = visit_expressions_mut(stmt, |e| {
        // `typname[0]` is a subscript of the column; `t.typname[0]` of `t`, through
        // the field `typname`.
        if let SqlExpr::CompoundFieldAccess { root, access_chain } = e
            && let Some((AccessExpr::Subscript(Subscript::Index { index }), fields)) =
                access_chain.split_last()
            && let SqlExpr::Value(v) = index
            && let Value::Number(n, _) = &v.value
            && let Ok(n) = n.parse::<i64>()
            && n >= 0
        {
            let mut parts = match root.as_ref() {
                SqlExpr::Identifier(i) => vec![i.clone()],
                SqlExpr::CompoundIdentifier(parts) => parts.clone(),
                _ => return ControlFlow::Continue(()),
            };
            for f in fields {
                let AccessExpr::Dot(SqlExpr::Identifier(i)) = f else {
                    return ControlFlow::Continue(());
                };
                parts.push(i.clone());
            }
            if !parts
                .last()
                .is_some_and(|c| ident_name(c).ends_with("name"))
            {
                return ControlFlow::Continue(());
            }
            let column = match parts.len() {
                1 => SqlExpr::Identifier(parts.remove(0)),
                _ => SqlExpr::CompoundIdentifier(parts),
            };
            let number = |n: i64| SqlExpr::Value(Value::Number(n.to_string(), false).into());
            *e = call("substr", vec![column, number(n + 1), number(1)]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `proc.oid = typ.typreceive`, as Npgsql's type loading joins pg_proc: the catalog keeps
/// `typreceive` (and `typsend`, `typinput`, `typoutput`) as the function's name, so the
/// join is on `proc.proname`.
pub fn regproc_joins(stmt: &mut Statement) {
    const REGPROC: [&str; 4] = ["typreceive", "typsend", "typinput", "typoutput"];
    let is_regproc = |e: &SqlExpr| match e {
        SqlExpr::CompoundIdentifier(p) => p
            .last()
            .is_some_and(|i| REGPROC.contains(&ident_name(i).as_str())),
        SqlExpr::Identifier(i) => REGPROC.contains(&ident_name(i).as_str()),
        _ => false,
    };
    let to_name = |e: &mut SqlExpr| {
        if let SqlExpr::CompoundIdentifier(p) = e
            && p.len() >= 2
            && p.last().is_some_and(|i| ident_name(i) == "oid")
            && let Some(last) = p.last_mut()
        {
            *last = Ident::new("proname");
        }
    };
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = e
        {
            if is_regproc(right) {
                to_name(left);
            } else if is_regproc(left) {
                to_name(right);
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The catalog columns of type `regproc` (a function named by its name), which the
/// emulation keeps as the name (all of PostgreSQL 15's but the empty pg_transform's).
const REGPROC_COLUMNS: [&str; 33] = [
    "amproc",
    "conproc",
    "prsstart",
    "prstoken",
    "prsend",
    "prsheadline",
    "prslextype",
    "tmplinit",
    "tmpllexize",
    "oprcode",
    "oprrest",
    "oprjoin",
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
    "aggfnoid",
    "aggtransfn",
    "aggfinalfn",
    "aggcombinefn",
    "aggserialfn",
    "aggdeserialfn",
    "aggmtransfn",
    "aggminvtransfn",
    "aggmfinalfn",
    "amhandler",
    "prosupport",
    "rngcanonical",
    "rngsubdiff",
];

/// Casts of a `regproc` column kept as the function's name (pg_dump's): `::regproc` is
/// the name as it is; `oprcode::oid` its OID, the function of that name's in `pg_proc`
/// (the lowest, when overloaded), 0 for none (`-`), as Postgres' regproc 0.
pub fn regproc_oids(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{DataType, Select, VisitMut, VisitorMut};
    /// The regproc column `e` casts, and the type it casts to.
    fn cast(e: &SqlExpr) -> Option<(&Ident, String)> {
        let SqlExpr::Cast {
            expr,
            data_type: DataType::Custom(to, _),
            ..
        } = e
        else {
            return None;
        };
        let column = match expr.as_ref() {
            SqlExpr::Identifier(i) => Some(i),
            SqlExpr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        }
        .filter(|c| REGPROC_COLUMNS.contains(&ident_name(c).as_str()))?;
        Some((column, to.0.last()?.as_ident().map(ident_name)?))
    }
    // A select list's cast keeps the column's name, as Postgres names it.
    struct Names;
    impl VisitorMut for Names {
        type Break = ();
        fn post_visit_select(&mut self, sel: &mut Select) -> ControlFlow<()> {
            for item in &mut sel.projection {
                if let SelectItem::UnnamedExpr(e) = item
                    && let Some((column, _)) = cast(e)
                {
                    let alias = column.clone();
                    *item = SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias,
                    };
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Names);
    let _ = visit_expressions_mut(stmt, |e| {
        let Some((_, to)) = cast(e) else {
            return ControlFlow::<()>::Continue(());
        };
        let SqlExpr::Cast { expr, .. } = e else {
            return ControlFlow::Continue(());
        };
        if to == "regproc" {
            *e = (**expr).clone();
        } else if to == "oid" {
            let lookup = format!(
                "coalesce((SELECT min(vg_regproc.oid) FROM pg_catalog.pg_proc vg_regproc WHERE vg_regproc.proname = {expr}), 0)::oid"
            );
            if let Ok(found) = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&lookup)
            .and_then(|mut p| p.parse_expr())
            {
                *e = found;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The OIDs of the system catalogs (fixed in every Postgres; PostgreSQL 15's tables of
/// `pg_catalog`), what their `tableoid` system column holds.
pub(crate) const CATALOG_OIDS: [(&str, i64); 64] = [
    ("pg_aggregate", 2600),
    ("pg_am", 2601),
    ("pg_amop", 2602),
    ("pg_amproc", 2603),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_auth_members", 1261),
    ("pg_authid", 1260),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_conversion", 2607),
    ("pg_database", 1262),
    ("pg_db_role_setting", 2964),
    ("pg_default_acl", 826),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_enum", 3501),
    ("pg_event_trigger", 3466),
    ("pg_extension", 3079),
    ("pg_foreign_data_wrapper", 2328),
    ("pg_foreign_server", 1417),
    ("pg_foreign_table", 3118),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_init_privs", 3394),
    ("pg_language", 2612),
    ("pg_largeobject", 2613),
    ("pg_largeobject_metadata", 2995),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_opfamily", 2753),
    ("pg_parameter_acl", 6243),
    ("pg_partitioned_table", 3350),
    ("pg_policy", 3256),
    ("pg_proc", 1255),
    ("pg_publication", 6104),
    ("pg_publication_namespace", 6237),
    ("pg_publication_rel", 6106),
    ("pg_range", 3541),
    ("pg_replication_origin", 6000),
    ("pg_rewrite", 2618),
    ("pg_seclabel", 3596),
    ("pg_sequence", 2224),
    ("pg_shdepend", 1214),
    ("pg_shdescription", 2396),
    ("pg_shseclabel", 3592),
    ("pg_statistic", 2619),
    ("pg_statistic_ext", 3381),
    ("pg_statistic_ext_data", 3429),
    ("pg_subscription", 6100),
    ("pg_subscription_rel", 6102),
    ("pg_tablespace", 1213),
    ("pg_transform", 3576),
    ("pg_trigger", 2620),
    ("pg_ts_config", 3602),
    ("pg_ts_config_map", 3603),
    ("pg_ts_dict", 3600),
    ("pg_ts_parser", 3601),
    ("pg_ts_template", 3764),
    ("pg_type", 1247),
    ("pg_user_mapping", 1418),
];

/// `alias.tableoid` of a system catalog (psql's `\dd` and `\dL` join `pg_description`
/// on it): the emulation has no system columns, so it becomes the catalog's OID. Each
/// SELECT resolves the aliases of its own FROM, innermost first.
pub fn catalog_tableoids(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{Select, VisitMut, VisitorMut};
    struct Scopes;
    impl VisitorMut for Scopes {
        type Break = ();
        fn post_visit_select(&mut self, sel: &mut Select) -> ControlFlow<()> {
            let mut oids: Vec<(String, i64)> = Vec::new();
            for t in &sel.from {
                for factor in
                    std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
                {
                    let TableFactor::Table { name, alias, .. } = factor else {
                        continue;
                    };
                    let parts: Vec<String> = name
                        .0
                        .iter()
                        .filter_map(|p| p.as_ident().map(ident_name))
                        .collect();
                    if parts.len() > 1 && parts[0] != "pg_catalog" {
                        continue;
                    }
                    let Some(table) = parts.last() else { continue };
                    if let Some(&(_, oid)) = CATALOG_OIDS.iter().find(|(n, _)| n == table) {
                        let key = alias.as_ref().map(|a| ident_name(&a.name));
                        oids.push((key.unwrap_or_else(|| table.clone()), oid));
                    }
                }
            }
            if oids.is_empty() {
                return ControlFlow::Continue(());
            }
            // A bare `tableoid` is the catalog's when it is the only relation in FROM
            // (pg_dump's `SELECT tableoid, oid, ... FROM pg_opclass`).
            let only = match (sel.from.as_slice(), oids.as_slice()) {
                ([t], [(_, oid)]) if t.joins.is_empty() => Some(*oid),
                _ => None,
            };
            let number = |oid: i64| {
                SqlExpr::Value(
                    datafusion::sql::sqlparser::ast::Value::Number(oid.to_string(), false).into(),
                )
            };
            let replaced = |e: &SqlExpr| match e {
                SqlExpr::CompoundIdentifier(p)
                    if p.len() == 2 && ident_name(&p[1]) == "tableoid" =>
                {
                    oids.iter()
                        .find(|(a, _)| *a == ident_name(&p[0]))
                        .map(|(_, oid)| *oid)
                }
                SqlExpr::Identifier(i) if ident_name(i) == "tableoid" => only,
                _ => None,
            };
            // The select list keeps the column's name (pg_dump finds its columns by name).
            for item in &mut sel.projection {
                if let SelectItem::UnnamedExpr(e) = item
                    && let Some(oid) = replaced(e)
                {
                    *item = SelectItem::ExprWithAlias {
                        expr: number(oid),
                        alias: Ident::new("tableoid"),
                    };
                }
            }
            let _ = visit_expressions_mut(sel, |e| {
                if let Some(oid) = replaced(e) {
                    *e = number(oid);
                }
                ControlFlow::<()>::Continue(())
            });
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Scopes);
}

/// Whether a correlated subquery meets its outer row only in conditions of its WHERE
/// of the form `own.column = outer.column`, which DataFusion decorrelates into a join
/// (SQLAlchemy's column default through `pg_attrdef`); an outer reference anywhere else
/// (`pg_get_serial_sequence(outer.attrelid::regclass, ...)`, in FROM or in the select
/// list) it cannot run.
fn joins_on_columns(q: &datafusion::sql::sqlparser::ast::Query) -> bool {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let own = own_relations(sel);
    let column = |e: &SqlExpr, inside: bool| {
        matches!(e, SqlExpr::CompoundIdentifier(p) if p.len() >= 2
            && own.contains(&ident_name(&p[p.len() - 2])) == inside)
    };
    let mut parts = Vec::new();
    if let Some(w) = &sel.selection {
        conjuncts(w.clone(), &mut parts);
    }
    let joined = parts
        .iter()
        .filter(|p| {
            matches!(p, SqlExpr::BinaryOp { left, op: BinaryOperator::Eq, right }
                if (column(left, true) && column(right, false))
                    || (column(left, false) && column(right, true)))
        })
        .count();
    let mut all = 0;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(q, |x| {
        if let SqlExpr::CompoundIdentifier(parts) = x
            && parts.len() >= 2
            && !own.contains(&ident_name(&parts[parts.len() - 2]))
        {
            all += 1;
        }
        ControlFlow::<()>::Continue(())
    });
    joined > 0 && all == joined
}

/// The last resort for a catalog statement DataFusion cannot run: the correlated
/// scalar subqueries it cannot decorrelate answer NULL (what the compatibility parser
/// does for those in a select list), or with `all`, every one left. Returns whether
/// anything changed.
pub fn null_catalog_subqueries(stmt: &mut Statement, user_tables: &[String], all: bool) -> bool {
    if relations(stmt).iter().any(|r| user_tables.contains(r)) {
        return false;
    }
    let mut changed = false;
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Subquery(q) = e
            && (correlated(q) || unnests(q))
            && (all || unnests(q) || !joins_on_columns(q))
        {
            *e = SqlExpr::Value(datafusion::sql::sqlparser::ast::Value::Null.into());
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// `FROM unnest(outer.column)`: DataFusion has no `unnest` table function.
fn unnests(q: &datafusion::sql::sqlparser::ast::Query) -> bool {
    use datafusion::sql::sqlparser::ast::TableFactor;
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    sel.from.iter().any(|t| {
        matches!(&t.relation, TableFactor::Table { name, args: Some(_), .. }
            if name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("unnest")))
    })
}

/// Whether `stmt` holds a scalar subquery anywhere (what [`null_catalog_subqueries`]
/// may give up).
pub fn has_scalar_subquery(stmt: &Statement) -> bool {
    datafusion::sql::sqlparser::ast::visit_expressions(stmt, |e| {
        if matches!(e, SqlExpr::Subquery(_)) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Whether a scalar subquery of `stmt` selects `FROM unnest(...)`, which DataFusion
/// cannot plan (see [`null_catalog_subqueries`]).
pub fn unnests_subquery(stmt: &Statement) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(stmt, |e| {
        if let SqlExpr::Subquery(q) = e
            && unnests(q)
        {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Whether a select list holds a scalar subquery that refers to the outer query.
pub fn projects_correlated_subquery(stmt: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::SelectItem;
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_statements(stmt, |s| {
        if let Statement::Query(q) = s
            && let SetExpr::Select(sel) = q.body.as_ref()
        {
            for item in &sel.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
                        if let SqlExpr::Subquery(q) = x
                            && correlated(q)
                        {
                            found = true;
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// A scalar subquery with a recursive CTE, correlated to the outer row, as the result of
/// a CASE branch: asyncpg's type query finds a domain's base type this way. DataFusion
/// cannot run a recursive CTE per outer row; the branch answers NULL instead, as the
/// compatibility parser already does for correlated subqueries in a select list
/// (vectorgate has no domains of its own; the catalog's few are over built-in types).
pub fn recursive_case_subqueries(stmt: &mut Statement) {
    fn recursive(e: &SqlExpr) -> bool {
        match e {
            SqlExpr::Subquery(q) => q.with.as_ref().is_some_and(|w| w.recursive),
            SqlExpr::Nested(inner) => recursive(inner),
            _ => false,
        }
    }
    let null = || SqlExpr::Value(datafusion::sql::sqlparser::ast::Value::Null.into());
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Case {
            conditions,
            else_result,
            ..
        } = e
        {
            for when in conditions.iter_mut() {
                if recursive(&when.result) {
                    when.result = null();
                }
            }
            if else_result.as_deref().is_some_and(recursive) {
                *else_result = Some(Box::new(null()));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `x [NOT] IN (SELECT ...)` in a select list (Grafana's table picker names a table by
/// whether its schema is on the search path): DataFusion runs IN subqueries only in
/// filters, so an uncorrelated one becomes `array_has(ARRAY(SELECT ...), x)`, which
/// [`array_subqueries`] then aggregates. Catalog statements only: `array_has` is false
/// where IN over a NULL would be NULL.
pub fn projected_in_subqueries(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{Select, VisitMut, VisitorMut};
    struct Selects;
    impl VisitorMut for Selects {
        type Break = ();
        fn pre_visit_select(&mut self, sel: &mut Select) -> ControlFlow<()> {
            for item in sel.projection.iter_mut() {
                let (SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }) = item
                else {
                    continue;
                };
                let _ = visit_expressions_mut(x, |e| {
                    if let SqlExpr::InSubquery {
                        expr,
                        subquery,
                        negated,
                    } = e
                        && !correlated(subquery)
                    {
                        let array = SqlExpr::Function(Function {
                            name: ObjectName::from(vec![Ident::new("array")]),
                            uses_odbc_syntax: false,
                            parameters: FunctionArguments::None,
                            args: FunctionArguments::Subquery(subquery.clone()),
                            filter: None,
                            null_treatment: None,
                            over: None,
                            within_group: vec![],
                        });
                        let has = call("array_has", vec![array, (**expr).clone()]);
                        *e = if *negated {
                            SqlExpr::UnaryOp {
                                op: datafusion::sql::sqlparser::ast::UnaryOperator::Not,
                                expr: Box::new(SqlExpr::Nested(Box::new(has))),
                            }
                        } else {
                            has
                        };
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Selects);
}

/// A subquery whose FROM calls a table function over a catalog column that is NULL in
/// every row here, or in a catalog with no rows: NULL. pg_dump's
/// `pg_options_to_table(fdwoptions)` (no object has options here), `unnest(evttags)`
/// (no event triggers) and `generate_series(0, array_upper(pr.prattrs, 1))` (no
/// publications), which DataFusion cannot run over an outer column.
pub fn options_subqueries(stmt: &mut Statement) {
    const EMPTY_COLUMNS: [&str; 2] = ["evttags", "prattrs"];
    fn reads_empty<'a>(mut exprs: impl Iterator<Item = &'a SqlExpr>) -> bool {
        exprs.any(|x| {
            datafusion::sql::sqlparser::ast::visit_expressions(x, |e| {
                let column = match e {
                    SqlExpr::Identifier(i) => Some(i),
                    SqlExpr::CompoundIdentifier(p) => p.last(),
                    _ => None,
                };
                if column.is_some_and(|c| EMPTY_COLUMNS.contains(&ident_name(c).as_str())) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_break()
        })
    }
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Subquery(q) = e
            && let SetExpr::Select(sel) = q.body.as_ref()
            && sel.from.iter().any(|t| match &t.relation {
                TableFactor::Table {
                    name,
                    args: Some(args),
                    ..
                } => {
                    name.0
                        .last()
                        .and_then(|p| p.as_ident())
                        .is_some_and(|f| ident_name(f) == "pg_options_to_table")
                        || reads_empty(args.args.iter().filter_map(|a| match a {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x),
                            _ => None,
                        }))
                }
                TableFactor::UNNEST { array_exprs, .. } => reads_empty(array_exprs.iter()),
                _ => false,
            })
        {
            *e = SqlExpr::Value(datafusion::sql::sqlparser::ast::Value::Null.into());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT x FROM ... [ORDER BY ...])`, as psql's `\d+` and `\du` write it,
/// becomes `(SELECT array_agg(x [ORDER BY ...]) FROM ...)`: the same array, as a scalar
/// subquery DataFusion can plan. (An empty result gives NULL instead of `{}`.)
pub fn array_subqueries(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{
        FunctionArgumentClause, OrderByKind, SelectItem, SetExpr,
    };
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Function(f) = e
            && f.name.0.len() == 1
            && f.name.0[0]
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("array"))
            && let FunctionArguments::Subquery(q) = &f.args
        {
            let mut q = (**q).clone();
            let order = match q.order_by.take().map(|o| o.kind) {
                Some(OrderByKind::Expressions(exprs)) => exprs,
                _ => vec![],
            };
            if let SetExpr::Select(sel) = q.body.as_mut()
                && let [item] = sel.projection.as_mut_slice()
                && let SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } = item
            {
                let mut agg = call("array_agg", vec![x.clone()]);
                if let SqlExpr::Function(af) = &mut agg
                    && let FunctionArguments::List(list) = &mut af.args
                    && !order.is_empty()
                {
                    list.clauses.push(FunctionArgumentClause::OrderBy(order));
                }
                *x = agg;
                *e = SqlExpr::Subquery(Box::new(q));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod regproc_tests {
    use super::{l1_operator, regproc_literals};

    #[test]
    fn regproc_literals_become_bare_names() {
        assert_eq!(
            regproc_literals("SELECT typinput='pg_catalog.array_in'::regproc AS a, 'x'::REGPROC"),
            "SELECT typinput='array_in' AS a, 'x'"
        );
        let untouched = "SELECT 'a::regproc' || '1'::int";
        assert_eq!(regproc_literals(untouched), untouched);
        assert_eq!(
            l1_operator("SELECT a <+> b, '<+>', \"x<+>\" -- <+>\nFROM t ORDER BY a<+>'[1]'"),
            "SELECT a <~+> b, '<+>', \"x<+>\" -- <+>\nFROM t ORDER BY a<~+>'[1]'"
        );
    }
}

#[cfg(test)]
mod catalog_rewrite_tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn unnest_subqueries_of_catalog_queries_can_be_nulled() {
        let sql = "SELECT pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        super::array_subqueries(&mut stmt);
        assert!(super::unnests_subquery(&stmt), "{stmt}");
        assert!(
            super::null_catalog_subqueries(&mut stmt, &[], false),
            "{stmt}"
        );
        assert!(!stmt.to_string().contains("unnest"), "{stmt}");
        assert!(!super::unnests_subquery(&stmt), "{stmt}");
        let mut user = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        super::array_subqueries(&mut user);
        assert!(!super::null_catalog_subqueries(
            &mut user,
            &["pg_class".to_string()],
            true
        ));
    }

    #[test]
    fn a_bare_correlated_column_subquery_is_aggregated_even_with_limit_one() {
        let sql = "SELECT datname, (SELECT spcname FROM pg_tablespace t WHERE t.oid = dattablespace LIMIT 1) AS tablespace, (SELECT spcname FROM pg_tablespace t ORDER BY 1 LIMIT 1) AS first FROM pg_database";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        super::aggregate_catalog_subqueries(&mut stmt, &[]);
        let text = stmt.to_string();
        assert!(
            text.contains("(SELECT max(spcname) FROM pg_tablespace t WHERE t.oid = dattablespace)"),
            "{text}"
        );
        assert!(
            text.contains("(SELECT spcname FROM pg_tablespace t ORDER BY 1 LIMIT 1)"),
            "{text}"
        );
    }

    #[test]
    fn a_regproc_column_cast_to_oid_is_looked_up_by_name() {
        let sql = "SELECT oprcode::oid AS oprcode, o.oprrest::pg_catalog.oid, oid::oid, oprjoin::pg_catalog.regproc FROM pg_operator o";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        super::regproc_oids(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT coalesce((SELECT min(vg_regproc.oid) FROM pg_catalog.pg_proc vg_regproc WHERE vg_regproc.proname = oprcode), 0)::oid AS oprcode, \
             coalesce((SELECT min(vg_regproc.oid) FROM pg_catalog.pg_proc vg_regproc WHERE vg_regproc.proname = o.oprrest), 0)::oid AS oprrest, oid::oid, oprjoin AS oprjoin FROM pg_operator o"
        );
    }

    #[test]
    fn a_subquery_over_pg_options_to_table_is_null() {
        let sql = "SELECT array_to_string(ARRAY(SELECT quote_ident(option_name) FROM pg_options_to_table(fdwoptions) ORDER BY option_name), ', ') AS fdwoptions, array(select x from unnest(e.evttags) as t(x)), array(select x from unnest(tags) as t(x)), (SELECT array_agg(attname) FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s, pg_attribute) FROM pg_foreign_data_wrapper";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        super::array_subqueries(&mut stmt);
        super::options_subqueries(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT array_to_string(NULL, ', ') AS fdwoptions, NULL, (SELECT array_agg(x) FROM UNNEST(tags) AS t (x)), NULL FROM pg_foreign_data_wrapper"
        );
    }

    #[test]
    fn a_subscripted_name_column_is_its_character() {
        let sql = "SELECT typname[0] = '_', t.typname[2], tags[1] FROM pg_type t";
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        super::name_subscripts(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT substr(typname, 1, 1) = '_', substr(t.typname, 3, 1), tags[1] FROM pg_type t"
        );
    }

    #[test]
    fn a_catalog_tableoid_becomes_its_oid_and_keeps_its_name() {
        let rewrite = |sql: &str| {
            let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parse")
                .remove(0);
            super::catalog_tableoids(&mut stmt);
            stmt.to_string()
        };
        assert_eq!(
            rewrite(
                "SELECT x.tableoid, x.oid FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE x.tableoid > 0"
            ),
            "SELECT 3079 AS tableoid, x.oid FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE 3079 > 0"
        );
        assert_eq!(
            rewrite("SELECT tableoid, oid FROM pg_catalog.pg_opclass"),
            "SELECT 2616 AS tableoid, oid FROM pg_catalog.pg_opclass"
        );
        // A bare tableoid beside two relations, or of a user's table, is left alone.
        let left = "SELECT tableoid FROM pg_class c JOIN pg_namespace n ON true";
        assert_eq!(rewrite(left), left);
        let user = "SELECT d.tableoid FROM docs d";
        assert_eq!(rewrite(user), user);
    }

    #[test]
    fn subqueries_joined_on_columns_are_kept_until_the_last_resort() {
        // SQLAlchemy's column reflection: the default joins on columns (kept), the
        // identity options reach the outer row through a function (nulled).
        let sql = "SELECT a.attname, CASE WHEN a.atthasdef THEN (SELECT max(pg_get_expr(d.adbin, d.adrelid)) FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) END AS dflt, (SELECT s.seqstart FROM pg_sequence s WHERE s.seqrelid = pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)::regclass::oid) AS ident FROM pg_attribute a";
        let parse = || {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parse")
                .remove(0)
        };
        let mut fewer = parse();
        assert!(super::null_catalog_subqueries(&mut fewer, &[], false));
        let text = fewer.to_string();
        assert!(
            text.contains("FROM pg_attrdef") && !text.contains("FROM pg_sequence"),
            "{text}"
        );
        let mut all = parse();
        assert!(super::null_catalog_subqueries(&mut all, &[], true));
        assert!(!all.to_string().contains("FROM pg_attrdef"), "{all}");
    }
}
