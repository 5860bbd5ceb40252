//! Postgres' string functions that DataFusion lacks: `regexp_split_to_array` (LangGraph
//! splits its namespaces so) and `convert_to` / `convert_from` (text to and from bytea
//! in an encoding; its checkpointer sends `convert_to(task_path, 'UTF8')`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, TypeSignature, Volatility, create_udf};

/// The functions of this module.
pub fn all() -> Vec<ScalarUDF> {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    vec![
        ScalarUDF::new_from_impl(
            datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
                "regexp_split_to_array",
                datafusion::logical_expr::Signature::one_of(
                    vec![
                        TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                        TypeSignature::Exact(vec![DataType::Utf8; 3]),
                    ],
                    Volatility::Immutable,
                ),
                list,
                Arc::new(regexp_split_to_array),
            ),
        ),
        create_udf(
            "convert_to",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Binary,
            Volatility::Stable,
            Arc::new(convert_to),
        ),
        create_udf(
            "convert_from",
            vec![DataType::Binary, DataType::Utf8],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(convert_from),
        ),
    ]
}

/// An error with a SQLSTATE, through DataFusion.
fn sql_error(e: crate::error::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Whether `name` is an encoding name Postgres reads as UTF-8.
fn utf8(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    n == "utf8" || n == "unicode"
}

fn check_encoding(encodings: &StringArray, direction: &str) -> DfResult<()> {
    for name in encodings.iter().flatten() {
        if !utf8(name) {
            return Err(sql_error(crate::error::Error::InvalidParameter(format!(
                "invalid {direction} encoding name \"{name}\" (vectorgate converts UTF8 only)"
            ))));
        }
    }
    Ok(())
}

fn convert_to(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let text = arrays[0].as_string::<i32>();
    check_encoding(arrays[1].as_string::<i32>(), "destination")?;
    let out: BinaryArray = text.iter().map(|t| t.map(str::as_bytes)).collect();
    Ok(ColumnarValue::Array(Arc::new(out)))
}

fn convert_from(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let bytes = arrays[0].as_binary::<i32>();
    check_encoding(arrays[1].as_string::<i32>(), "source")?;
    let out = bytes
        .iter()
        .map(|b| {
            b.map(|b| {
                std::str::from_utf8(b).map_err(|_| {
                    sql_error(crate::error::Error::Detailed {
                        code: "22021",
                        message: "invalid byte sequence for encoding \"UTF8\"".into(),
                        detail: String::new(),
                    })
                })
            })
            .transpose()
        })
        .collect::<DfResult<StringArray>>()?;
    Ok(ColumnarValue::Array(Arc::new(out)))
}

/// A Postgres regular expression with its flags (`i`: case-insensitive; others refused).
fn compile(pattern: &str, flags: Option<&str>) -> DfResult<regex::Regex> {
    let mut b = regex::RegexBuilder::new(pattern);
    for f in flags.unwrap_or_default().chars() {
        match f {
            'i' => b.case_insensitive(true),
            'c' => b.case_insensitive(false),
            'g' => {
                return Err(sql_error(crate::error::Error::FeatureNotSupported(
                    "regexp_split_to_array() does not support the \"global\" option".into(),
                )));
            }
            other => {
                return Err(sql_error(crate::error::Error::InvalidParameter(format!(
                    "invalid regular expression option: \"{other}\""
                ))));
            }
        };
    }
    b.build().map_err(|e| {
        sql_error(crate::error::Error::Detailed {
            code: "2201B",
            message: format!("invalid regular expression: {e}"),
            detail: String::new(),
        })
    })
}

/// The pieces of `s` between the matches of `re`, as Postgres splits: a zero-length
/// match at the start or end of the string, or right after another match, splits
/// nothing.
fn split<'a>(s: &'a str, re: &regex::Regex) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for m in re.find_iter(s) {
        if m.start() == m.end() && (m.start() == 0 || m.start() == s.len() || m.start() == start) {
            continue;
        }
        pieces.push(&s[start..m.start()]);
        start = m.end();
    }
    pieces.push(&s[start..]);
    pieces
}

fn regexp_split_to_array(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let rows = args
        .iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let arrays: Vec<ArrayRef> = args
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<DfResult<_>>()?;
    let text = arrays[0].as_string::<i32>();
    let patterns = arrays[1].as_string::<i32>();
    let flags = arrays.get(2).map(|a| a.as_string::<i32>());
    let mut compiled: Option<(String, Option<String>, regex::Regex)> = None;
    let mut out = ListBuilder::new(StringBuilder::new());
    for r in 0..rows {
        let flag = flags.and_then(|f| (!f.is_null(r)).then(|| f.value(r)));
        if text.is_null(r) || patterns.is_null(r) || flags.is_some_and(|f| f.is_null(r)) {
            out.append(false);
            continue;
        }
        let pattern = patterns.value(r);
        let fresh = compiled
            .as_ref()
            .is_none_or(|(p, f, _)| p != pattern || f.as_deref() != flag);
        if fresh {
            compiled = Some((
                pattern.to_string(),
                flag.map(str::to_string),
                compile(pattern, flag)?,
            ));
        }
        let re = &compiled.as_ref().expect("compiled above").2;
        for piece in split(text.value(r), re) {
            out.values().append_value(piece);
        }
        out.append(true);
    }
    let result: ArrayRef = Arc::new(out.finish());
    Ok(
        if rows == 1 && args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str, p: &str) -> Vec<String> {
        split(s, &regex::Regex::new(p).expect("a pattern"))
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn splits_as_postgres() {
        assert_eq!(pieces("a.b.c", r"\."), ["a", "b", "c"]);
        assert_eq!(pieces("", r"\."), [""]);
        assert_eq!(pieces(".a.", r"\."), ["", "a", ""]);
        assert_eq!(pieces("abc", ""), ["a", "b", "c"]);
        assert_eq!(pieces("a  b c", r"\s*"), ["a", "b", "c"]);
    }
}
