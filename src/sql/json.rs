//! `json` and `jsonb` in SQL: the operators (`->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`,
//! `?|`, `?&`, `||`, `-`, `#-`, and comparisons), casts, and functions.
//!
//! A json or jsonb value is a Utf8 column whose field metadata names its type
//! ([`mark`]); the wire announces it so, and the operators below are
//! planned only when an operand carries the mark (an untyped literal beside one is read
//! as jsonb, as Postgres resolves `unknown`). Casts are rewritten into function calls
//! before planning, since the query engine has no jsonb type.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, ExprSchemable,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
    function::{AccumulatorArgs, StateFieldsArgs},
    utils::AggregateOrderSensitivity,
};
use datafusion::sql::sqlparser::ast::{
    self as sql, BinaryOperator, Expr as SqlExpr, Statement, VisitMut, VisitorMut,
};

use crate::error::{Error, Result};
use crate::json::path::JsonPath;
use crate::json::{Json, Kind, invalid, json_locate, kind_of, marked};
use crate::types::parse_pg_array as text_array_literal;

fn expr_kind(e: &Expr, schema: &DFSchema) -> Option<Kind> {
    e.to_field(schema).ok().and_then(|(_, f)| kind_of(&f))
}

fn df(e: Error) -> datafusion::error::DataFusionError {
    e.into()
}

/// One argument value of one row.
#[derive(Debug, Clone)]
enum Arg {
    Null,
    Json(Kind, String),
    Value(ScalarValue),
}

impl Arg {
    /// Row `row` of an argument column (`kind`: the column's JSON type, if any).
    fn at(array: &ArrayRef, row: usize, kind: Option<Kind>) -> DfResult<Arg> {
        if let Some(k) = kind {
            // A json column's text, read as it is stored.
            if array.is_null(row) {
                return Ok(Arg::Null);
            }
            if let Some(a) = array.as_any().downcast_ref::<StringArray>() {
                return Ok(Arg::Json(k, a.value(row).to_string()));
            }
        }
        let v = ScalarValue::try_from_array(array, row)?;
        Ok(if v.is_null() {
            Arg::Null
        } else if let Some(k) = kind {
            Arg::Json(k, text_of(&v).unwrap_or_default())
        } else {
            Arg::Value(v)
        })
    }

    fn is_null(&self) -> bool {
        matches!(self, Arg::Null)
    }

    /// The argument read as jsonb: a json/jsonb value, or text (an untyped literal or a
    /// parameter) parsed as jsonb input.
    fn json(&self) -> Result<Option<Json>> {
        Ok(match self {
            Arg::Null => None,
            Arg::Json(Kind::Jsonb, t) => Some(Json::parse_jsonb(t)?),
            Arg::Json(Kind::Json, t) => Some(Json::parse(t)?),
            Arg::Value(v) => match text_of(v) {
                Some(t) => Some(Json::parse_jsonb(&t)?),
                None => return Err(not_json(v)),
            },
        })
    }

    fn text(&self) -> Option<String> {
        match self {
            Arg::Null => None,
            Arg::Json(_, t) => Some(t.clone()),
            Arg::Value(v) => text_of(v).or_else(|| Some(v.to_string())),
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            Arg::Value(ScalarValue::Boolean(b)) => *b,
            Arg::Value(v) => text_of(v).and_then(|t| match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "on" | "yes" | "1" => Some(true),
                "f" | "false" | "off" | "no" | "0" => Some(false),
                _ => None,
            }),
            _ => None,
        }
    }

    /// A `text[]`: an array value, or its literal (`'{a,b}'`).
    fn text_array(&self) -> Result<Option<Vec<Option<String>>>> {
        Ok(match self {
            Arg::Null => None,
            Arg::Value(v) => match v {
                ScalarValue::List(l) => Some(list_texts(l.values())),
                ScalarValue::LargeList(l) => Some(list_texts(l.values())),
                ScalarValue::FixedSizeList(l) => Some(list_texts(l.values())),
                other => match text_of(other) {
                    Some(t) => Some(text_array_literal(&t)?),
                    None => return Err(not_json(other)),
                },
            },
            Arg::Json(..) => {
                return Err(Error::UndefinedFunction(
                    "a path must be text[], not json".into(),
                ));
            }
        })
    }

    /// The argument as a JSON value (`to_jsonb`): json stays itself, SQL values map to
    /// JSON's, NULL is `null`.
    fn to_json(&self) -> Result<Json> {
        Ok(match self {
            Arg::Null => Json::Null,
            Arg::Json(..) => self.json()?.unwrap_or(Json::Null),
            Arg::Value(v) => scalar_to_json(v),
        })
    }
}

fn list_texts(values: &ArrayRef) -> Vec<Option<String>> {
    (0..values.len())
        .map(|i| {
            ScalarValue::try_from_array(values, i)
                .ok()
                .filter(|v| !v.is_null())
                .map(|v| text_of(&v).unwrap_or_else(|| v.to_string()))
        })
        .collect()
}

fn text_of(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int_of(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(i)) => Some(*i as i64),
        ScalarValue::Int16(Some(i)) => Some(*i as i64),
        ScalarValue::Int32(Some(i)) => Some(*i as i64),
        ScalarValue::Int64(Some(i)) => Some(*i),
        ScalarValue::UInt8(Some(i)) => Some(*i as i64),
        ScalarValue::UInt16(Some(i)) => Some(*i as i64),
        ScalarValue::UInt32(Some(i)) => Some(*i as i64),
        ScalarValue::UInt64(Some(i)) => i64::try_from(*i).ok(),
        _ => None,
    }
}

fn not_json(v: &ScalarValue) -> Error {
    Error::UndefinedFunction(format!(
        "cannot use a value of type {} as jsonb",
        crate::sql::constraints::sql_type_name(&v.data_type())
    ))
}

/// `to_jsonb` of a SQL value.
fn scalar_to_json(v: &ScalarValue) -> Json {
    use ScalarValue as S;
    if v.is_null() {
        return Json::Null;
    }
    match v {
        S::Boolean(Some(b)) => Json::Bool(*b),
        S::Float32(Some(f)) if !f.is_finite() => Json::String(float_word(*f as f64)),
        S::Float64(Some(f)) if !f.is_finite() => Json::String(float_word(*f)),
        S::Float32(Some(f)) => Json::Number(float_number(*f as f64)),
        S::Float64(Some(f)) => Json::Number(float_number(*f)),
        S::Decimal128(Some(_), _, _) | S::Decimal256(Some(_), _, _) => Json::Number(
            crate::json::canonical_number(&v.to_string()).unwrap_or_else(|_| v.to_string()),
        ),
        _ if int_of(v).is_some() => Json::Number(int_of(v).unwrap_or_default().to_string()),
        S::UInt64(Some(u)) => Json::Number(u.to_string()),
        S::List(l) => Json::Array(list_json(l.values())),
        S::LargeList(l) => Json::Array(list_json(l.values())),
        S::FixedSizeList(l) => Json::Array(list_json(l.values())),
        S::TimestampMicrosecond(Some(_), tz)
        | S::TimestampMillisecond(Some(_), tz)
        | S::TimestampNanosecond(Some(_), tz)
        | S::TimestampSecond(Some(_), tz) => {
            // ISO 8601, as Postgres writes timestamps into JSON.
            let text = v.to_string();
            let text = text.replacen(' ', "T", 1);
            Json::String(
                if tz.is_some() && !text.ends_with('Z') && !text.contains('+') {
                    format!("{text}+00:00")
                } else {
                    text.replace('Z', "+00:00")
                },
            )
        }
        other => Json::String(text_of(other).unwrap_or_else(|| other.to_string())),
    }
}

fn float_word(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}

fn float_number(f: f64) -> String {
    let text = f.to_string();
    crate::json::canonical_number(&text).unwrap_or(text)
}

fn list_json(values: &ArrayRef) -> Vec<Json> {
    (0..values.len())
        .map(|i| {
            ScalarValue::try_from_array(values, i)
                .map(|v| scalar_to_json(&v))
                .unwrap_or(Json::Null)
        })
        .collect()
}

/// What a function gives back for one row.
enum Out {
    Null,
    Json(Json),
    /// Text already in its final form (json kept as written, `jsonb_pretty`).
    Text(String),
    Bool(bool),
    Int(i64),
    List(Vec<Option<String>>),
}

impl From<Option<Json>> for Out {
    fn from(v: Option<Json>) -> Out {
        v.map(Out::Json).unwrap_or(Out::Null)
    }
}

impl From<Option<bool>> for Out {
    fn from(v: Option<bool>) -> Out {
        v.map(Out::Bool).unwrap_or(Out::Null)
    }
}

/// The result type of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ret {
    Jsonb,
    Json,
    /// json when the first argument is json, else jsonb.
    Same,
    Text,
    Bool,
    Int,
    /// A list the set-returning forms unnest: of jsonb, or of text.
    JsonbList,
    TextList,
}

type Eval = dyn Fn(&[Arg]) -> Result<Out> + Send + Sync;

/// A scalar json function: evaluated row by row over [`Arg`]s.
pub struct JsonFunction {
    name: &'static str,
    signature: Signature,
    ret: Ret,
    /// NULL in any argument gives NULL without calling `eval`.
    strict: bool,
    eval: Arc<Eval>,
}

impl Debug for JsonFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonFunction")
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for JsonFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for JsonFunction {}

impl std::hash::Hash for JsonFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The items of the set-returning functions' lists. (Plain text: `unnest` keeps no
/// field marks, so elements of jsonb come out as their text.)
fn list_field() -> FieldRef {
    Arc::new(Field::new("item", DataType::Utf8, true))
}

impl JsonFunction {
    fn udf(
        name: &'static str,
        ret: Ret,
        strict: bool,
        eval: impl Fn(&[Arg]) -> Result<Out> + Send + Sync + 'static,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(JsonFunction {
            name,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Immutable,
            ),
            ret,
            strict,
            eval: Arc::new(eval),
        })
    }

    fn result_kind(&self, first: Option<&FieldRef>) -> Option<Kind> {
        match self.ret {
            Ret::Jsonb => Some(Kind::Jsonb),
            Ret::Json => Some(Kind::Json),
            Ret::Same => Some(match first.and_then(|f| kind_of(f)) {
                Some(Kind::Json) => Kind::Json,
                _ => Kind::Jsonb,
            }),
            _ => None,
        }
    }
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.ret {
            Ret::Bool => DataType::Boolean,
            Ret::Int => DataType::Int32,
            Ret::JsonbList | Ret::TextList => DataType::List(list_field()),
            _ => DataType::Utf8,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let ty = self.return_type(&[])?;
        Ok(Arc::new(match self.result_kind(args.arg_fields.first()) {
            Some(kind) if ty == DataType::Utf8 => marked(self.name, kind, true),
            _ => Field::new(self.name, ty, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let kinds: Vec<Option<Kind>> = args.arg_fields.iter().map(|f| kind_of(f)).collect();
        let rows = if scalar { 1 } else { n };
        // Constant arguments (a key, a path, a literal) are read once; columns per row.
        let mut row_args = Vec::with_capacity(args.args.len());
        let mut columns = Vec::new();
        for (i, (a, kind)) in args.args.iter().zip(&kinds).enumerate() {
            match a {
                ColumnarValue::Scalar(v) => row_args.push(Arg::at(&v.to_array()?, 0, *kind)?),
                ColumnarValue::Array(array) => {
                    row_args.push(Arg::Null);
                    columns.push((i, array, *kind));
                }
            }
        }
        let mut outs = Vec::with_capacity(rows);
        for row in 0..rows {
            for (i, array, kind) in &columns {
                row_args[*i] = Arg::at(array, row, *kind)?;
            }
            outs.push(if self.strict && row_args.iter().any(Arg::is_null) {
                Out::Null
            } else {
                (self.eval)(&row_args).map_err(df)?
            });
        }
        let array = build(self.ret, outs)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

fn build(ret: Ret, outs: Vec<Out>) -> DfResult<ArrayRef> {
    Ok(match ret {
        Ret::Bool => {
            let mut b = BooleanBuilder::with_capacity(outs.len());
            for o in outs {
                match o {
                    Out::Bool(v) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Ret::Int => {
            let mut b = Int32Builder::with_capacity(outs.len());
            for o in outs {
                match o {
                    Out::Int(v) => b.append_value(v as i32),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Ret::JsonbList | Ret::TextList => {
            let mut b = ListBuilder::new(StringBuilder::new()).with_field(list_field());
            for o in outs {
                match o {
                    Out::List(items) => {
                        for i in items {
                            b.values().append_option(i);
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::with_capacity(outs.len(), outs.len() * 16);
            for o in outs {
                match o {
                    Out::Json(j) => b.append_value(j.to_jsonb_text()),
                    Out::Text(t) => b.append_value(t),
                    Out::Bool(v) => b.append_value(if v { "true" } else { "false" }),
                    Out::Int(i) => b.append_value(i.to_string()),
                    Out::Null | Out::List(_) => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// The steps of a path given as the arguments after the first (`jsonb_extract_path`'s
/// variadic text) or as one `text[]` (`#>`). None: a NULL step.
fn path_steps(args: &[Arg]) -> Result<Option<Vec<String>>> {
    let mut steps = Vec::new();
    for a in args {
        match a {
            Arg::Null => return Ok(None),
            Arg::Value(
                ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_),
            ) => {
                for s in a.text_array()?.unwrap_or_default() {
                    match s {
                        Some(s) => steps.push(s),
                        None => return Ok(None),
                    }
                }
            }
            other => match other {
                Arg::Value(v) if int_of(v).is_some() => {
                    steps.push(int_of(v).unwrap_or_default().to_string())
                }
                _ => steps.push(other.text().unwrap_or_default()),
            },
        }
    }
    Ok(Some(steps))
}

/// `->`/`#>` and their text forms. `text`: the `->>`/`#>>` form.
fn extract(args: &[Arg], text: bool) -> Result<Out> {
    let Some(steps) = path_steps(&args[1..])? else {
        return Ok(Out::Null);
    };
    if let Arg::Json(Kind::Json, doc) = &args[0] {
        // json keeps its text as written.
        let Some(found) = json_locate(doc, &steps) else {
            return Ok(Out::Null);
        };
        if !text {
            return Ok(Out::Text(found.to_string()));
        }
        return Ok(match Json::parse(found)? {
            Json::Null => Out::Null,
            Json::String(s) => Out::Text(s),
            _ => Out::Text(found.to_string()),
        });
    }
    if let Arg::Json(Kind::Jsonb, doc) = &args[0] {
        // A stored jsonb is in its canonical text, and so is each value in it: the
        // value's text is found without parsing the rest of the document.
        let Some(found) = json_locate(doc, &steps) else {
            return Ok(Out::Null);
        };
        return Ok(match (text, found.as_bytes().first()) {
            (false, _) => Out::Text(found.to_string()),
            (true, Some(b'"')) => match Json::parse(found)? {
                Json::String(s) => Out::Text(s),
                _ => Out::Text(found.to_string()),
            },
            (true, _) if found == "null" => Out::Null,
            (true, _) => Out::Text(found.to_string()),
        });
    }
    let Some(doc) = args[0].json()? else {
        return Ok(Out::Null);
    };
    let found = doc.at_path(&steps);
    Ok(match (found, text) {
        (None, _) => Out::Null,
        (Some(v), false) => Out::Json(v.clone()),
        (Some(v), true) => v.as_text().map(Out::Text).unwrap_or(Out::Null),
    })
}

fn json_arg(args: &[Arg], i: usize) -> Result<Json> {
    args.get(i)
        .map(Arg::json)
        .transpose()?
        .flatten()
        .ok_or_else(|| Error::internal("missing json argument"))
}

fn keys_arg(args: &[Arg], i: usize) -> Result<Vec<String>> {
    Ok(args
        .get(i)
        .map(Arg::text_array)
        .transpose()?
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect())
}

/// `jsonb_path_*`'s arguments: target, path, vars, silent.
fn path_call(args: &[Arg]) -> Result<(Json, JsonPath, Option<Json>, bool)> {
    let target = json_arg(args, 0)?;
    let path = JsonPath::parse(&args[1].text().unwrap_or_default())?;
    let vars = match args.get(2) {
        Some(a) if !a.is_null() => a.json()?,
        _ => None,
    };
    let silent = args.get(3).and_then(Arg::boolean).unwrap_or(false);
    Ok((target, path, vars, silent))
}

/// json's object text as json_build_object writes it (`{"a" : 1, "b" : 2}`), and
/// (`padded`) as json_object_agg does (`{ "a" : 1 }`).
fn json_object_text(pairs: &[(String, Json)], padded: bool) -> String {
    let mut out = String::from(if padded { "{ " } else { "{" });
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        crate::json::write_string(&mut out, k);
        out.push_str(" : ");
        out.push_str(&v.to_jsonb_text());
    }
    out.push_str(if padded { " }" } else { "}" });
    out
}

fn object_pairs(args: &[Arg]) -> Result<Vec<(String, Json)>> {
    if !args.len().is_multiple_of(2) {
        return Err(invalid("argument list must have even number of elements"));
    }
    let mut pairs = Vec::with_capacity(args.len() / 2);
    for (i, pair) in args.chunks(2).enumerate() {
        let key = pair[0]
            .text()
            .ok_or_else(|| invalid(format!("argument {}: key must not be null", 2 * i + 1)))?;
        pairs.push((key, pair[1].to_json()?));
    }
    Ok(pairs)
}

fn array_length(doc: &Json) -> Result<Out> {
    match doc {
        Json::Array(items) => Ok(Out::Int(items.len() as i64)),
        Json::Object(_) => Err(invalid("cannot get array length of a non-array")),
        _ => Err(invalid("cannot get array length of a scalar")),
    }
}

/// The scalar functions, under their Postgres names (the operators are planned into the
/// functions Postgres implements them with: `->` is `jsonb_object_field`, `@>` is
/// `jsonb_contains`, ...).
pub fn functions() -> Vec<ScalarUDF> {
    use JsonFunction as F;
    let mut out = vec![
        F::udf("jsonb_object_field", Ret::Same, true, |a| extract(a, false)),
        F::udf("jsonb_object_field_text", Ret::Text, true, |a| {
            extract(a, true)
        }),
        F::udf("jsonb_extract_path", Ret::Same, true, |a| extract(a, false)),
        F::udf("jsonb_extract_path_text", Ret::Text, true, |a| {
            extract(a, true)
        }),
        F::udf("json_extract_path", Ret::Same, true, |a| extract(a, false)),
        F::udf("json_extract_path_text", Ret::Text, true, |a| {
            extract(a, true)
        }),
        F::udf("jsonb_contains", Ret::Bool, true, |a| {
            Ok(Out::Bool(json_arg(a, 0)?.contains(&json_arg(a, 1)?)))
        }),
        F::udf("jsonb_contained", Ret::Bool, true, |a| {
            Ok(Out::Bool(json_arg(a, 1)?.contains(&json_arg(a, 0)?)))
        }),
        F::udf("jsonb_exists", Ret::Bool, true, |a| {
            Ok(Out::Bool(
                json_arg(a, 0)?.has_key(&a[1].text().unwrap_or_default()),
            ))
        }),
        F::udf("jsonb_exists_any", Ret::Bool, true, |a| {
            let doc = json_arg(a, 0)?;
            Ok(Out::Bool(keys_arg(a, 1)?.iter().any(|k| doc.has_key(k))))
        }),
        F::udf("jsonb_exists_all", Ret::Bool, true, |a| {
            let doc = json_arg(a, 0)?;
            Ok(Out::Bool(keys_arg(a, 1)?.iter().all(|k| doc.has_key(k))))
        }),
        F::udf("jsonb_concat", Ret::Jsonb, true, |a| {
            Ok(Out::Json(json_arg(a, 0)?.concat(json_arg(a, 1)?)))
        }),
        F::udf("jsonb_delete", Ret::Jsonb, true, |a| {
            let doc = json_arg(a, 0)?;
            Ok(Out::Json(match &a[1] {
                Arg::Value(v) if int_of(v).is_some() => {
                    doc.minus_index(int_of(v).unwrap_or_default())?
                }
                Arg::Value(ScalarValue::List(_)) => doc.minus_keys(&keys_arg(a, 1)?)?,
                _ => {
                    let keys: Vec<String> = a[1..].iter().filter_map(Arg::text).collect();
                    doc.minus_keys(&keys)?
                }
            }))
        }),
        F::udf("jsonb_delete_path", Ret::Jsonb, true, |a| {
            Ok(Out::Json(json_arg(a, 0)?.minus_path(&keys_arg(a, 1)?)?))
        }),
        F::udf("jsonb_cmp", Ret::Int, true, |a| {
            // Stored jsonb and each value in it are in their canonical text: the same
            // text is the same value, found without parsing either (a filter's usual
            // answer for the rows it keeps).
            if let (Arg::Json(Kind::Jsonb, x), Arg::Json(Kind::Jsonb, y)) = (&a[0], &a[1])
                && x == y
            {
                return Ok(Out::Int(0));
            }
            Ok(Out::Int(
                crate::json::compare(&json_arg(a, 0)?, &json_arg(a, 1)?) as i64,
            ))
        }),
        // Casts (`x::jsonb`, `x::json`), rewritten into calls before planning.
        F::udf("vg_cast_jsonb", Ret::Jsonb, true, |a| match &a[0] {
            Arg::Value(v) if text_of(v).is_none() => Err(Error::Detailed {
                code: "42846",
                message: format!(
                    "cannot cast type {} to jsonb",
                    crate::sql::constraints::sql_type_name(&v.data_type())
                ),
                detail: String::new(),
            }),
            other => Ok(Out::Json(other.json()?.unwrap_or(Json::Null))),
        }),
        F::udf("vg_cast_json", Ret::Json, true, |a| match &a[0] {
            Arg::Value(v) if text_of(v).is_none() => Err(Error::Detailed {
                code: "42846",
                message: format!(
                    "cannot cast type {} to json",
                    crate::sql::constraints::sql_type_name(&v.data_type())
                ),
                detail: String::new(),
            }),
            other => {
                let t = other.text().unwrap_or_default();
                crate::json::check_json(&t)?;
                Ok(Out::Text(t))
            }
        }),
        F::udf("to_jsonb", Ret::Jsonb, true, |a| {
            Ok(Out::Json(a[0].to_json()?))
        }),
        F::udf("to_json", Ret::Json, true, |a| {
            Ok(Out::Json(a[0].to_json()?))
        }),
        F::udf("jsonb_build_object", Ret::Jsonb, false, |a| {
            Ok(Out::Json(Json::Object(object_pairs(a)?).normalized()))
        }),
        F::udf("json_build_object", Ret::Json, false, |a| {
            Ok(Out::Text(json_object_text(&object_pairs(a)?, false)))
        }),
        F::udf("jsonb_build_array", Ret::Jsonb, false, |a| {
            Ok(Out::Json(Json::Array(
                a.iter().map(Arg::to_json).collect::<Result<_>>()?,
            )))
        }),
        F::udf("json_build_array", Ret::Json, false, |a| {
            Ok(Out::Json(Json::Array(
                a.iter().map(Arg::to_json).collect::<Result<_>>()?,
            )))
        }),
        F::udf("jsonb_typeof", Ret::Text, true, |a| {
            Ok(Out::Text(json_arg(a, 0)?.type_name().into()))
        }),
        F::udf("json_typeof", Ret::Text, true, |a| {
            Ok(Out::Text(json_arg(a, 0)?.type_name().into()))
        }),
        F::udf("jsonb_array_length", Ret::Int, true, |a| {
            array_length(&json_arg(a, 0)?)
        }),
        F::udf("json_array_length", Ret::Int, true, |a| {
            array_length(&json_arg(a, 0)?)
        }),
        F::udf("jsonb_set", Ret::Jsonb, false, |a| {
            if a.iter().take(3).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let create = a
                .get(3)
                .map(|c| c.boolean().unwrap_or(false))
                .unwrap_or(true);
            Ok(Out::Json(json_arg(a, 0)?.set_path(
                &keys_arg(a, 1)?,
                json_arg(a, 2)?,
                create,
                None,
            )?))
        }),
        F::udf("jsonb_insert", Ret::Jsonb, false, |a| {
            if a.iter().take(3).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let after = a.get(3).and_then(Arg::boolean).unwrap_or(false);
            Ok(Out::Json(json_arg(a, 0)?.set_path(
                &keys_arg(a, 1)?,
                json_arg(a, 2)?,
                false,
                Some(after),
            )?))
        }),
        F::udf("jsonb_strip_nulls", Ret::Jsonb, true, |a| {
            Ok(Out::Json(json_arg(a, 0)?.strip_nulls()))
        }),
        F::udf("jsonb_pretty", Ret::Text, true, |a| {
            Ok(Out::Text(json_arg(a, 0)?.to_pretty()))
        }),
        F::udf("jsonb_path_exists", Ret::Bool, false, |a| {
            if a.iter().take(2).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let (doc, path, vars, silent) = path_call(a)?;
            Ok(path.exists(&doc, vars.as_ref(), silent)?.into())
        }),
        F::udf("jsonb_path_match", Ret::Bool, false, |a| {
            if a.iter().take(2).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let (doc, path, vars, silent) = path_call(a)?;
            Ok(path.matches(&doc, vars.as_ref(), silent)?.into())
        }),
        F::udf("jsonb_path_query_array", Ret::Jsonb, false, |a| {
            if a.iter().take(2).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let (doc, path, vars, silent) = path_call(a)?;
            Ok(Out::Json(Json::Array(path.query(
                &doc,
                vars.as_ref(),
                silent,
            )?)))
        }),
        F::udf("jsonb_path_query_first", Ret::Jsonb, false, |a| {
            if a.iter().take(2).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let (doc, path, vars, silent) = path_call(a)?;
            Ok(path
                .query(&doc, vars.as_ref(), silent)?
                .into_iter()
                .next()
                .into())
        }),
        // The set-returning functions, as lists that the rewrite below unnests.
        F::udf("jsonb_path_query", Ret::JsonbList, false, |a| {
            if a.iter().take(2).any(Arg::is_null) {
                return Ok(Out::Null);
            }
            let (doc, path, vars, silent) = path_call(a)?;
            Ok(Out::List(
                path.query(&doc, vars.as_ref(), silent)?
                    .iter()
                    .map(|v| Some(v.to_jsonb_text()))
                    .collect(),
            ))
        }),
    ];
    for (name, text) in [
        ("jsonb_array_elements", false),
        ("jsonb_array_elements_text", true),
        ("json_array_elements", false),
        ("json_array_elements_text", true),
    ] {
        out.push(F::udf(
            name,
            if text { Ret::TextList } else { Ret::JsonbList },
            true,
            move |a| match json_arg(a, 0)? {
                Json::Array(items) => Ok(Out::List(
                    items
                        .iter()
                        .map(|v| {
                            if text {
                                v.as_text()
                            } else {
                                Some(v.to_jsonb_text())
                            }
                        })
                        .collect(),
                )),
                Json::Object(_) => Err(invalid("cannot extract elements from an object")),
                _ => Err(invalid("cannot extract elements from a scalar")),
            },
        ));
    }
    for name in ["jsonb_object_keys", "json_object_keys"] {
        out.push(F::udf(
            name,
            Ret::TextList,
            true,
            move |a| match json_arg(a, 0)? {
                Json::Object(pairs) => {
                    Ok(Out::List(pairs.into_iter().map(|(k, _)| Some(k)).collect()))
                }
                Json::Array(_) => Err(invalid(format!("cannot call {name} on an array"))),
                _ => Err(invalid(format!("cannot call {name} on a scalar"))),
            },
        ));
    }
    // jsonb_each's two columns, as two lists unnested side by side.
    for (name, text) in [
        ("vg_each_keys", false),
        ("vg_each_values", false),
        ("vg_each_text_values", true),
    ] {
        let keys = name == "vg_each_keys";
        out.push(F::udf(
            name,
            if keys || text {
                Ret::TextList
            } else {
                Ret::JsonbList
            },
            true,
            move |a| match json_arg(a, 0)? {
                Json::Object(pairs) => Ok(Out::List(
                    pairs
                        .into_iter()
                        .map(|(k, v)| {
                            if keys {
                                Some(k)
                            } else if text {
                                v.as_text()
                            } else {
                                Some(v.to_jsonb_text())
                            }
                        })
                        .collect(),
                )),
                _ => Err(invalid("cannot deconstruct an array as an object")),
            },
        ));
    }
    out
}

/// Set-returning functions the rewrite turns into `unnest` of the list form, with the
/// column names Postgres gives them in FROM.
const SET_RETURNING: &[(&str, &[(&str, &str)])] = &[
    ("jsonb_array_elements", &[("jsonb_array_elements", "value")]),
    (
        "jsonb_array_elements_text",
        &[("jsonb_array_elements_text", "value")],
    ),
    ("json_array_elements", &[("json_array_elements", "value")]),
    (
        "json_array_elements_text",
        &[("json_array_elements_text", "value")],
    ),
    (
        "jsonb_object_keys",
        &[("jsonb_object_keys", "jsonb_object_keys")],
    ),
    (
        "json_object_keys",
        &[("json_object_keys", "json_object_keys")],
    ),
    (
        "jsonb_path_query",
        &[("jsonb_path_query", "jsonb_path_query")],
    ),
    (
        "jsonb_each",
        &[("vg_each_keys", "key"), ("vg_each_values", "value")],
    ),
    (
        "jsonb_each_text",
        &[("vg_each_keys", "key"), ("vg_each_text_values", "value")],
    ),
    (
        "json_each",
        &[("vg_each_keys", "key"), ("vg_each_values", "value")],
    ),
    (
        "json_each_text",
        &[("vg_each_keys", "key"), ("vg_each_text_values", "value")],
    ),
];

/// `jsonb_agg`/`json_agg` (`object`: false) and `jsonb_object_agg`/`json_object_agg`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonAgg {
    name: &'static str,
    kind: Kind,
    object: bool,
    signature: Signature,
}

impl JsonAgg {
    pub fn all() -> Vec<AggregateUDF> {
        [
            ("jsonb_agg", Kind::Jsonb, false),
            ("json_agg", Kind::Json, false),
            ("jsonb_object_agg", Kind::Jsonb, true),
            ("json_object_agg", Kind::Json, true),
        ]
        .into_iter()
        .map(|(name, kind, object)| {
            AggregateUDF::new_from_impl(JsonAgg {
                name,
                kind,
                object,
                signature: Signature::variadic_any(Volatility::Immutable),
            })
        })
        .collect()
    }
}

impl AggregateUDFImpl for JsonAgg {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field(&self, _arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        Ok(Arc::new(marked(self.name, self.kind, true)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        if !self.object && !args.ordering_fields.is_empty() {
            // Ordered: array_agg's state (its values and their sort keys).
            let list = list_of_first(args.input_fields);
            return array_agg_udaf().state_fields(StateFieldsArgs {
                return_field: list,
                ..args
            });
        }
        Ok(vec![Arc::new(Field::new("items", DataType::Utf8, true))])
    }

    /// `jsonb_agg(x ORDER BY y)`: the elements are put in order by array_agg's
    /// accumulator, whatever order they arrive in (another aggregate of the same query
    /// may order its input otherwise).
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        if self.object {
            AggregateOrderSensitivity::HardRequirement
        } else {
            AggregateOrderSensitivity::SoftRequirement
        }
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        _beneficial_ordering: bool,
    ) -> DfResult<Option<Arc<dyn AggregateUDFImpl>>> {
        // The ordered accumulator sorts for itself, ordered input or not.
        Ok((!self.object).then_some(self as Arc<dyn AggregateUDFImpl>))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        if !self.object && !args.order_bys.is_empty() {
            let inner = array_agg_udaf().accumulator(AccumulatorArgs {
                return_field: list_of_first(args.expr_fields),
                ..args
            })?;
            return Ok(Box::new(OrderedJsonAccumulator {
                inner,
                kind: args.expr_fields.first().and_then(|f| kind_of(f)),
            }));
        }
        Ok(Box::new(JsonAccumulator {
            kinds: args.expr_fields.iter().map(|f| kind_of(f)).collect(),
            object: self.object,
            kind: self.kind,
            items: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct JsonAccumulator {
    kinds: Vec<Option<Kind>>,
    object: bool,
    kind: Kind,
    /// jsonb_agg: one element per row; object_agg: key, value, key, value ...
    items: Vec<Json>,
}

impl Accumulator for JsonAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = values.first().map(|a| a.len()).unwrap_or(0);
        for row in 0..rows {
            let args = values
                .iter()
                .zip(&self.kinds)
                .map(|(a, kind)| Arg::at(a, row, *kind))
                .collect::<DfResult<Vec<Arg>>>()?;
            if self.object {
                let key = args
                    .first()
                    .and_then(Arg::text)
                    .ok_or_else(|| df(invalid("field name must not be null")))?;
                self.items.push(Json::String(key));
                self.items.push(
                    args.get(1)
                        .map(Arg::to_json)
                        .transpose()
                        .map_err(df)?
                        .unwrap_or(Json::Null),
                );
            } else {
                self.items.push(
                    args.first()
                        .map(Arg::to_json)
                        .transpose()
                        .map_err(df)?
                        .unwrap_or(Json::Null),
                );
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        if self.items.is_empty() {
            return Ok(ScalarValue::Utf8(None));
        }
        let value = if self.object {
            let pairs: Vec<(String, Json)> = self
                .items
                .chunks(2)
                .map(|p| match &p[0] {
                    Json::String(k) => (k.clone(), p[1].clone()),
                    _ => (String::new(), p[1].clone()),
                })
                .collect();
            match self.kind {
                Kind::Jsonb => Json::Object(pairs).normalized().to_jsonb_text(),
                Kind::Json => json_object_text(&pairs, true),
            }
        } else {
            Json::Array(self.items.clone()).to_jsonb_text()
        };
        Ok(ScalarValue::Utf8(Some(value)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.items.len() * 64
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Utf8(Some(
            Json::Array(self.items.clone()).to_jsonb_text(),
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let Some(a) = states.first() else {
            return Ok(());
        };
        let a = a
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| df(Error::internal("json_agg state is not text")))?;
        for i in 0..a.len() {
            if a.is_null(i) {
                continue;
            }
            if let Json::Array(items) = Json::parse(a.value(i)).map_err(df)? {
                self.items.extend(items);
            }
        }
        Ok(())
    }
}

/// A list of the aggregated argument's type: array_agg's result, which an ordered
/// `jsonb_agg` collects its elements in.
fn list_of_first(inputs: &[FieldRef]) -> FieldRef {
    let item = inputs
        .first()
        .map_or(DataType::Null, |f| f.data_type().clone());
    Arc::new(Field::new("list", DataType::new_list(item, true), true))
}

fn array_agg_udaf() -> Arc<AggregateUDF> {
    datafusion::functions_aggregate::array_agg::array_agg_udaf()
}

/// `jsonb_agg(x ORDER BY ...)`: array_agg's accumulator, which keeps each value with
/// its sort keys and orders them at the end, its list then written as a JSON array.
#[derive(Debug)]
struct OrderedJsonAccumulator {
    inner: Box<dyn Accumulator>,
    kind: Option<Kind>,
}

impl Accumulator for OrderedJsonAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let ScalarValue::List(list) = self.inner.evaluate()? else {
            return Ok(ScalarValue::Utf8(None));
        };
        if list.is_null(0) || list.value(0).is_empty() {
            return Ok(ScalarValue::Utf8(None));
        }
        let values = list.value(0);
        let items = (0..values.len())
            .map(|i| Arg::at(&values, i, self.kind).and_then(|a| a.to_json().map_err(df)))
            .collect::<DfResult<Vec<Json>>>()?;
        Ok(ScalarValue::Utf8(Some(Json::Array(items).to_jsonb_text())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.inner.size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.inner.merge_batch(states)
    }
}

/// Plans the JSON operators into the functions above when an operand is json or jsonb.
#[derive(Debug)]
pub struct JsonOperators {
    functions: HashMap<&'static str, Arc<ScalarUDF>>,
}

impl JsonOperators {
    pub fn new(udfs: &[ScalarUDF]) -> Self {
        JsonOperators {
            functions: udfs
                .iter()
                .filter_map(|u| {
                    let name: &'static str = match u.name() {
                        "jsonb_object_field" => "jsonb_object_field",
                        "jsonb_object_field_text" => "jsonb_object_field_text",
                        "jsonb_extract_path" => "jsonb_extract_path",
                        "jsonb_extract_path_text" => "jsonb_extract_path_text",
                        "jsonb_contains" => "jsonb_contains",
                        "jsonb_contained" => "jsonb_contained",
                        "jsonb_exists" => "jsonb_exists",
                        "jsonb_exists_any" => "jsonb_exists_any",
                        "jsonb_exists_all" => "jsonb_exists_all",
                        "jsonb_concat" => "jsonb_concat",
                        "jsonb_delete" => "jsonb_delete",
                        "jsonb_delete_path" => "jsonb_delete_path",
                        "jsonb_cmp" => "jsonb_cmp",
                        _ => return None,
                    };
                    Some((name, Arc::new(u.clone())))
                })
                .collect(),
        }
    }

    fn call(&self, name: &str, args: Vec<Expr>) -> Expr {
        Expr::ScalarFunction(ScalarFunction::new_udf(self.functions[name].clone(), args))
    }
}

fn is_text_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(
            ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_),
            _
        )
    ) || matches!(e, Expr::Placeholder(p) if p.field.is_none())
}

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        let RawBinaryExpr { op, left, right } = expr;
        let lk = expr_kind(&left, schema);
        let rk = expr_kind(&right, schema);
        let jsonb_pair = (lk == Some(Kind::Jsonb)
            && (rk == Some(Kind::Jsonb) || is_text_literal(&right)))
            || (rk == Some(Kind::Jsonb) && is_text_literal(&left));
        let planned = match op {
            B::Arrow if lk.is_some() => self.call("jsonb_object_field", vec![left, right]),
            B::LongArrow if lk.is_some() => self.call("jsonb_object_field_text", vec![left, right]),
            B::HashArrow if lk.is_some() => {
                self.call("jsonb_extract_path", vec![left, path_arg(right)])
            }
            B::HashLongArrow if lk.is_some() => {
                self.call("jsonb_extract_path_text", vec![left, path_arg(right)])
            }
            B::AtArrow if lk == Some(Kind::Jsonb) || rk == Some(Kind::Jsonb) => {
                self.call("jsonb_contains", vec![left, right])
            }
            B::ArrowAt if lk == Some(Kind::Jsonb) || rk == Some(Kind::Jsonb) => {
                self.call("jsonb_contained", vec![left, right])
            }
            B::Question if lk == Some(Kind::Jsonb) => self.call("jsonb_exists", vec![left, right]),
            B::QuestionPipe if lk == Some(Kind::Jsonb) => {
                self.call("jsonb_exists_any", vec![left, right])
            }
            B::QuestionAnd if lk == Some(Kind::Jsonb) => {
                self.call("jsonb_exists_all", vec![left, right])
            }
            B::StringConcat if jsonb_pair => self.call("jsonb_concat", vec![left, right]),
            B::Minus if lk == Some(Kind::Jsonb) => self.call("jsonb_delete", vec![left, right]),
            B::HashMinus if lk == Some(Kind::Jsonb) => {
                self.call("jsonb_delete_path", vec![left, right])
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq if jsonb_pair => {
                let cmp = self.call("jsonb_cmp", vec![left, right]);
                let zero = Expr::Literal(ScalarValue::Int32(Some(0)), None);
                let op = match op {
                    B::Eq => datafusion::logical_expr::Operator::Eq,
                    B::NotEq => datafusion::logical_expr::Operator::NotEq,
                    B::Lt => datafusion::logical_expr::Operator::Lt,
                    B::LtEq => datafusion::logical_expr::Operator::LtEq,
                    B::Gt => datafusion::logical_expr::Operator::Gt,
                    _ => datafusion::logical_expr::Operator::GtEq,
                };
                Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(cmp),
                    op,
                    Box::new(zero),
                ))
            }
            // Arrays: `a @> b` holds when every element of `b` is in `a`.
            B::AtArrow | B::ArrowAt
                if [&left, &right].iter().all(|e| {
                    matches!(
                        e.get_type(schema),
                        Ok(DataType::List(_)
                            | DataType::LargeList(_)
                            | DataType::FixedSizeList(..))
                    )
                }) =>
            {
                let (whole, part) = if matches!(op, B::AtArrow) {
                    (left, right)
                } else {
                    (right, left)
                };
                datafusion::functions_nested::expr_fn::array_has_all(whole, part)
            }
            B::Question
            | B::QuestionPipe
            | B::QuestionAnd
            | B::AtArrow
            | B::ArrowAt
            | B::HashMinus
            | B::Arrow
            | B::LongArrow
            | B::HashArrow
            | B::HashLongArrow
                if lk.is_none() && rk.is_none() =>
            {
                return Err(df(Error::UndefinedFunction(format!(
                    "operator does not exist: {} {op} {}",
                    type_name(&left, schema),
                    type_name(&right, schema)
                ))));
            }
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

fn type_name(e: &Expr, schema: &DFSchema) -> String {
    match e.get_type(schema) {
        Ok(t) if is_text_literal(e) && t != DataType::Null => "unknown".into(),
        Ok(t) => crate::sql::constraints::sql_type_name(&t),
        Err(_) => "unknown".into(),
    }
}

/// `#>`'s right operand: a text[] literal (`'{a,b}'`) becomes the list it spells.
fn path_arg(e: Expr) -> Expr {
    if let Expr::Literal(ScalarValue::Utf8(Some(t)), _) = &e
        && let Ok(items) = text_array_literal(t)
    {
        let values: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
        return Expr::Literal(
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8)),
            None,
        );
    }
    e
}

fn function_call(name: &str, args: Vec<SqlExpr>) -> SqlExpr {
    SqlExpr::Function(sql::Function {
        name: sql::ObjectName::from(vec![sql::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: sql::FunctionArguments::None,
        args: sql::FunctionArguments::List(sql::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The JSON type a SQL type names.
fn json_type(t: &sql::DataType) -> Option<&'static str> {
    match t {
        sql::DataType::JSONB => Some("jsonb"),
        sql::DataType::JSON => Some("json"),
        sql::DataType::Custom(name, _) => {
            match name.to_string().to_ascii_lowercase().trim_matches('"') {
                "jsonb" | "pg_catalog.jsonb" => Some("jsonb"),
                "json" | "pg_catalog.json" => Some("json"),
                "jsonpath" | "pg_catalog.jsonpath" => Some("jsonpath"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Before planning: casts to json, jsonb and jsonpath become calls (jsonpath stays the
/// text it is); set-returning JSON functions become `unnest` of their list forms.
pub fn rewrite(stmt: &mut Statement) {
    struct Casts;
    impl VisitorMut for Casts {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            let (inner, ty) = match e {
                SqlExpr::Cast {
                    expr, data_type, ..
                } => match json_type(data_type) {
                    Some(t) => (
                        std::mem::replace(expr.as_mut(), SqlExpr::value(sql::Value::Null)),
                        t,
                    ),
                    None => return std::ops::ControlFlow::Continue(()),
                },
                SqlExpr::TypedString(ts) => match json_type(&ts.data_type) {
                    Some(t) => (SqlExpr::Value(ts.value.clone()), t),
                    None => return std::ops::ControlFlow::Continue(()),
                },
                _ => return std::ops::ControlFlow::Continue(()),
            };
            *e = match ty {
                "jsonb" => function_call("vg_cast_jsonb", vec![inner]),
                "json" => function_call("vg_cast_json", vec![inner]),
                _ => inner,
            };
            std::ops::ControlFlow::Continue(())
        }

        fn post_visit_table_factor(
            &mut self,
            t: &mut sql::TableFactor,
        ) -> std::ops::ControlFlow<()> {
            let sql::TableFactor::Table {
                name,
                args: Some(args),
                alias,
                ..
            } = t
            else {
                return std::ops::ControlFlow::Continue(());
            };
            let fname = name.to_string().to_ascii_lowercase();
            let Some((_, columns)) = SET_RETURNING.iter().find(|(n, _)| *n == fname) else {
                return std::ops::ControlFlow::Continue(());
            };
            let alias_name = alias
                .as_ref()
                .map(|a| a.name.value.clone())
                .unwrap_or_else(|| fname.clone());
            let names: Vec<String> = match alias.as_ref().map(|a| &a.columns) {
                Some(cols) if !cols.is_empty() => {
                    cols.iter().map(|c| c.name.value.clone()).collect()
                }
                // A one-column function in FROM names its column after the alias.
                _ if columns.len() == 1 && columns[0].1 != "value" => vec![alias_name.clone()],
                _ => columns.iter().map(|(_, c)| c.to_string()).collect(),
            };
            let args_sql: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
            let items: Vec<String> = columns
                .iter()
                .zip(&names)
                .map(|((f, _), n)| {
                    format!(
                        "unnest({f}({})) AS {}",
                        args_sql.join(", "),
                        crate::sql::compat::quote_ident(n)
                    )
                })
                .collect();
            let sql_text = format!("SELECT {}", items.join(", "));
            let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                &sql_text,
            ) else {
                return std::ops::ControlFlow::Continue(());
            };
            let Some(Statement::Query(subquery)) = parsed.pop() else {
                return std::ops::ControlFlow::Continue(());
            };
            *t = sql::TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(sql::TableAlias {
                    explicit: true,
                    name: sql::Ident::new(alias_name),
                    columns: vec![],
                    at: None,
                }),
                sample: None,
            };
            std::ops::ControlFlow::Continue(())
        }
    }
    // Calls in select lists first: the FROM rewrite writes `unnest(...)` calls itself.
    select_list_set_functions(stmt);
    let _ = stmt.visit(&mut Casts);
}

/// `SELECT jsonb_array_elements(x)`: the function's rows, as `unnest` of its list.
fn select_list_set_functions(stmt: &mut Statement) {
    let _ = sql::visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Function(f) = e {
            let fname = f.name.to_string().to_ascii_lowercase();
            if let Some((_, columns)) = SET_RETURNING.iter().find(|(n, _)| *n == fname)
                && columns.len() == 1
            {
                let call = std::mem::replace(e, SqlExpr::value(sql::Value::Null));
                *e = function_call("unnest", vec![call]);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}
