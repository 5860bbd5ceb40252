//! Postgres' string functions that DataFusion lacks: `regexp_split_to_array` (LangGraph
//! splits its namespaces so) and `convert_to` / `convert_from` (text to and from bytea
//! in an encoding; its checkpointer sends `convert_to(task_path, 'UTF8')`); and
//! Postgres' regular expressions read by the regex engine DataFusion uses (`\Z`,
//! `\m`, `\M`, `\y`, `\Y`, which LangGraph's namespace patterns use).

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
        create_udf(
            PG_REGEX,
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(pg_regex_udf),
        ),
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

/// The function [`regex_patterns`] wraps a pattern in.
pub const PG_REGEX: &str = "vg_pg_regex";

/// A Postgres (ARE) regular expression in the syntax of the `regex` crate: the escapes
/// Postgres has and it lacks, outside bracket expressions, translated (`\Z` end of
/// string, `\m` / `\M` start / end of a word, `\y` / `\Y` a word boundary / none).
pub fn pg_regex(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains('\\') {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut bracket = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push(c);
                    break;
                };
                match (bracket, next) {
                    (false, 'Z') => out.push_str("\\z"),
                    (false, 'm') => out.push_str("\\b{start}"),
                    (false, 'M') => out.push_str("\\b{end}"),
                    (false, 'y') => out.push_str("\\b"),
                    (false, 'Y') => out.push_str("\\B"),
                    _ => {
                        out.push(c);
                        out.push(next);
                    }
                }
            }
            '[' if !bracket => {
                bracket = true;
                out.push(c);
                // `]` first in a bracket expression is itself.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            ']' if bracket => {
                bracket = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn pg_regex_udf(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    Ok(match &args[0] {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(p)) => ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Utf8(p.as_deref().map(|p| pg_regex(p).into_owned())),
        ),
        other => {
            let a = other.to_array(1)?;
            let out: StringArray = a
                .as_string::<i32>()
                .iter()
                .map(|p| p.map(|p| pg_regex(p).into_owned()))
                .collect();
            ColumnarValue::Array(Arc::new(out))
        }
    })
}

/// The pattern of each regular-expression match (`~`, `~*`, `!~`, `!~*`) and of
/// `regexp_replace`, `regexp_match`, `regexp_like`, `regexp_count` wrapped in
/// [`PG_REGEX`], so that literal and bound patterns alike are read as Postgres reads
/// them.
pub fn regex_patterns(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    };
    let wrap = |e: &mut Expr| {
        let inner = std::mem::replace(e, Expr::value(datafusion::sql::sqlparser::ast::Value::Null));
        *e = super::pgvector::call(PG_REGEX, vec![inner]);
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        match e {
            Expr::BinaryOp {
                op:
                    BinaryOperator::PGRegexMatch
                    | BinaryOperator::PGRegexIMatch
                    | BinaryOperator::PGRegexNotMatch
                    | BinaryOperator::PGRegexNotIMatch,
                right,
                ..
            } => wrap(right),
            Expr::Function(f)
                if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    [
                        "regexp_replace",
                        "regexp_match",
                        "regexp_like",
                        "regexp_count",
                    ]
                    .contains(&i.value.to_ascii_lowercase().as_str())
                }) =>
            {
                if let FunctionArguments::List(list) = &mut f.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(p))) =
                        list.args.get_mut(1)
                {
                    wrap(p);
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
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
    let mut b = regex::RegexBuilder::new(&pg_regex(pattern));
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
    fn postgres_escapes_become_the_regex_crates() {
        assert_eq!(pg_regex(r"^a(\.|\Z)"), r"^a(\.|\z)");
        assert_eq!(pg_regex(r"\mcat\M \y\Y"), r"\b{start}cat\b{end} \b\B");
        assert_eq!(pg_regex(r"[\Z]x"), r"[\Z]x");
        assert_eq!(pg_regex("plain"), "plain");
        let re = regex::Regex::new(&pg_regex(r"(^|\.)d\Z")).expect("a pattern");
        assert!(re.is_match("a.b.d") && !re.is_match("a.d.b"));
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
