//! pgvector's `avg` and `sum` over vectors. `avg(embedding)` and `sum(embedding)` of a
//! vector (or halfvec) column become `vector_avg` and `vector_sum` (see
//! [`super::pgvector::rewrite`]): the element-wise mean or sum, NULLs left out, NULL for
//! no rows, a vector of the input's type.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use super::pgvector::vector_result_type as result_type;
use crate::error::Error;
use crate::types::{ColumnType, Value, value_from_array};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorAgg {
    /// `vector_avg` or `vector_sum`.
    name: &'static str,
    signature: Signature,
}

pub const AVG: &str = "vector_avg";
pub const SUM: &str = "vector_sum";

impl VectorAgg {
    pub fn all() -> Vec<datafusion::logical_expr::AggregateUDF> {
        [AVG, SUM]
            .into_iter()
            .map(|name| {
                datafusion::logical_expr::AggregateUDF::new_from_impl(VectorAgg {
                    name,
                    signature: Signature::any(1, Volatility::Immutable),
                })
            })
            .collect()
    }
}

impl AggregateUDFImpl for VectorAgg {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(ColumnType::Vector(0).arrow_type())
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        Ok(Arc::new(
            result_type(arg_fields.first()).arrow_field(self.name, true),
        ))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                "sum",
                DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
                true,
            )),
            Arc::new(Field::new("count", DataType::Int64, true)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(VectorAccumulator {
            avg: self.name == AVG,
            half: result_type(args.expr_fields.first()) == ColumnType::HalfVec(0),
            sum: Vec::new(),
            count: 0,
        }))
    }
}

#[derive(Debug)]
struct VectorAccumulator {
    avg: bool,
    half: bool,
    sum: Vec<f64>,
    count: i64,
}

impl VectorAccumulator {
    fn add(&mut self, v: &[f64], n: i64) -> Result<(), Error> {
        if self.count == 0 {
            self.sum = vec![0.0; v.len()];
        } else if v.len() != self.sum.len() {
            return Err(Error::DataException(if self.avg {
                format!("expected {} dimensions, not {}", self.sum.len(), v.len())
            } else {
                format!(
                    "different vector dimensions {} and {}",
                    self.sum.len(),
                    v.len()
                )
            }));
        }
        for (s, x) in self.sum.iter_mut().zip(v) {
            *s += x;
        }
        self.count += n;
        Ok(())
    }
}

impl Accumulator for VectorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(a) = values.first() else {
            return Ok(());
        };
        for row in 0..a.len() {
            let v = match value_from_array(a, row)? {
                Value::Null => continue,
                Value::Vector(v) => v,
                Value::Text(t) => crate::types::sparse::dense_of_text(&t)?,
                other => {
                    return Err(Error::DatatypeMismatch(format!(
                        "avg and sum take vectors here, not {other:?}"
                    ))
                    .into());
                }
            };
            let v: Vec<f64> = v.iter().map(|x| *x as f64).collect();
            self.add(&v, 1)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let ty = if self.half {
            ColumnType::HalfVec(0)
        } else {
            ColumnType::Vector(0)
        };
        let value = if self.count == 0 {
            Value::Null
        } else {
            let n = if self.avg { self.count as f64 } else { 1.0 };
            let v: Vec<f32> = self.sum.iter().map(|s| (s / n) as f32).collect();
            if v.iter().any(|x| x.is_infinite()) {
                return Err(Error::NumericOutOfRange("value out of range: overflow".into()).into());
            }
            Value::Vector(if self.half {
                crate::types::to_half(v)?
            } else {
                v
            })
        };
        let array = crate::types::build_array(&ty, std::iter::once(&value));
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.len() * 8
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let sum = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(
            self.sum.iter().map(|x| Some(*x)).collect::<Vec<_>>(),
        )]);
        Ok(vec![
            ScalarValue::List(Arc::new(sum)),
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (Some(sums), Some(counts)) = (
            states
                .first()
                .and_then(|a| a.as_any().downcast_ref::<ListArray>()),
            states
                .get(1)
                .and_then(|a| a.as_any().downcast_ref::<Int64Array>()),
        ) else {
            return Err(Error::internal("vector aggregate state").into());
        };
        for i in 0..sums.len() {
            if sums.is_null(i) || counts.is_null(i) || counts.value(i) == 0 {
                continue;
            }
            let inner = sums.value(i);
            let Some(values) = inner.as_any().downcast_ref::<Float64Array>() else {
                return Err(Error::internal("vector aggregate state").into());
            };
            self.add(values.values(), counts.value(i))?;
        }
        Ok(())
    }
}
