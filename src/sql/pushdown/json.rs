//! Pushdown of predicates on json and jsonb values: `meta->>'k' = $1`,
//! `(meta->>'n')::int > 3`, `meta @> '{...}'`, `meta ? 'k'`, `meta->'k' = '"v"'`,
//! `IN`, `IS NOT NULL`, and `jsonb_path_match` of the forms that map. A value inside a
//! json column is addressed in the payload as `column.key.key` (see
//! [`crate::store::filter::json_payload`]).
//!
//! A translation here only ever loosens: a search filter may let through rows the SQL
//! predicate rejects (the rows are re-checked), never the reverse. So these
//! predicates are built only where they hold positively: a jsonb predicate under NOT,
//! or `<>`, is left to the re-check after the join.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, expr::InList};

use super::cmp_op;
use crate::json::Json;
use crate::json::path::{JsonPath, Pushable};
use crate::store::TableDef;
use crate::store::filter::{CmpOp, JSON_KEYS_FIELD, Predicate, Scalar, addressable_key};
use crate::types::ColumnType;

/// A place inside a json column: the column and the keys below it.
struct JsonRef {
    column: String,
    keys: Vec<String>,
    /// Read as text (`->>`, `#>>`) rather than as json.
    text: bool,
}

impl JsonRef {
    fn payload_key(&self) -> String {
        let mut k = self.column.clone();
        for key in &self.keys {
            k.push('.');
            k.push_str(key);
        }
        k
    }

    fn below(&self, keys: &[String]) -> Option<JsonRef> {
        if !keys.iter().all(|k| addressable_key(k)) {
            return None;
        }
        let mut all = self.keys.clone();
        all.extend(keys.iter().cloned());
        Some(JsonRef {
            column: self.column.clone(),
            keys: all,
            text: false,
        })
    }
}

fn literal_text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => Some(s),
        _ => None,
    }
}

fn literal_texts(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Literal(ScalarValue::List(l), _) => {
            let values = l.values();
            (0..values.len())
                .map(|i| match ScalarValue::try_from_array(values, i).ok()? {
                    ScalarValue::Utf8(Some(s)) => Some(s),
                    _ => None,
                })
                .collect()
        }
        other => crate::types::parse_pg_array(literal_text(other)?)
            .ok()?
            .into_iter()
            .collect(),
    }
}

/// The json place an expression reads: a json column, or `->`/`->>`/`#>`/`#>>` with
/// constant keys below one.
fn json_ref(e: &Expr, table: &TableDef) -> Option<JsonRef> {
    match e {
        Expr::Column(c) => {
            let i = table.column_index(&c.name)?;
            // A column kept out of the payload (`payload_exclude`) is filtered after the join.
            let json = matches!(table.columns[i].ty, ColumnType::Jsonb | ColumnType::Json);
            (json && !table.kept_out(&c.name)).then(|| JsonRef {
                column: c.name.clone(),
                keys: Vec::new(),
                text: false,
            })
        }
        Expr::ScalarFunction(f) if !f.args.is_empty() => {
            let (steps, text) = match f.name() {
                "jsonb_object_field" | "jsonb_object_field_text" if f.args.len() == 2 => (
                    vec![literal_text(&f.args[1])?.to_string()],
                    f.name().ends_with("text"),
                ),
                "jsonb_extract_path" | "jsonb_extract_path_text" => {
                    let mut steps = Vec::new();
                    for a in &f.args[1..] {
                        steps.extend(
                            literal_texts(a)
                                .or_else(|| literal_text(a).map(|t| vec![t.to_string()]))?,
                        );
                    }
                    (steps, f.name().ends_with("text"))
                }
                _ => return None,
            };
            let base = json_ref(&f.args[0], table)?;
            if base.text {
                return None;
            }
            let mut r = base.below(&steps)?;
            r.text = text;
            Some(r)
        }
        _ => None,
    }
}

fn compare(r: &JsonRef, op: CmpOp, value: Scalar) -> Predicate {
    Predicate::Compare {
        column: r.payload_key(),
        op,
        value,
    }
}

/// Where a json value equals `v`: its payload match (None for null and containers,
/// which a match cannot test).
fn equals(r: &JsonRef, v: &Json) -> Option<Predicate> {
    Some(compare(
        r,
        CmpOp::Eq,
        match v {
            Json::String(s) => Scalar::Text(s.clone()),
            Json::Bool(b) => Scalar::Bool(*b),
            Json::Number(n) => number(n)?,
            _ => return None,
        },
    ))
}

fn number(text: &str) -> Option<Scalar> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Scalar::Int(i));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Scalar::Float)
}

/// `->>` equal to a text: the text is a string's, or a number's or a boolean's as
/// Postgres prints them.
fn text_equals(r: &JsonRef, s: &str) -> Option<Predicate> {
    let t = s.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        return None;
    }
    let mut any = vec![compare(r, CmpOp::Eq, Scalar::Text(s.to_string()))];
    if let Some(n) = number(s) {
        any.push(compare(r, CmpOp::Eq, n));
    }
    if s == "true" || s == "false" {
        any.push(compare(r, CmpOp::Eq, Scalar::Bool(s == "true")));
    }
    Some(if any.len() == 1 {
        any.remove(0)
    } else {
        Predicate::Or(any)
    })
}

/// A key present in the object at `r` (or, for an array, a string element).
fn has_key(r: &JsonRef, key: &str) -> Option<Predicate> {
    let mut any = vec![compare(r, CmpOp::Eq, Scalar::Text(key.to_string()))];
    if let Some(below) = r.below(&[key.to_string()]) {
        any.push(Predicate::Compare {
            column: JSON_KEYS_FIELD.to_string(),
            op: CmpOp::Eq,
            value: Scalar::Text(below.payload_key()),
        });
    }
    Some(Predicate::Or(any))
}

/// `r @> v`: every leaf of `v` at its place (null leaves and objects inside arrays,
/// which a payload filter cannot follow, are left out).
fn contains(r: &JsonRef, v: &Json, out: &mut Vec<Predicate>) {
    match v {
        Json::Object(pairs) => {
            for (k, val) in pairs {
                if let Some(below) = r.below(std::slice::from_ref(k)) {
                    contains(&below, val, out);
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                if let Some(p) = equals(r, item) {
                    out.push(p);
                }
            }
        }
        scalar => out.extend(equals(r, scalar)),
    }
}

fn all(mut parts: Vec<Predicate>) -> Option<Predicate> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Predicate::And(parts)),
    }
}

fn from_path(column: &JsonRef, p: &Pushable) -> Option<Predicate> {
    Some(match p {
        Pushable::And(ps) => all(ps.iter().filter_map(|p| from_path(column, p)).collect())?,
        Pushable::Or(ps) => Predicate::Or(
            ps.iter()
                .map(|p| from_path(column, p))
                .collect::<Option<Vec<_>>>()?,
        ),
        Pushable::Exists { keys } => Predicate::Compare {
            column: JSON_KEYS_FIELD.to_string(),
            op: CmpOp::Eq,
            value: Scalar::Text(column.below(keys)?.payload_key()),
        },
        Pushable::Compare { keys, op, value } => {
            let r = column.below(keys)?;
            let op = match *op {
                "=" => return equals(&r, value),
                "<" => CmpOp::Lt,
                "<=" => CmpOp::LtEq,
                ">" => CmpOp::Gt,
                _ => CmpOp::GtEq,
            };
            match value {
                Json::Number(n) => compare(&r, op, number(n)?),
                _ => return None,
            }
        }
    })
}

fn numeric(t: &datafusion::arrow::datatypes::DataType) -> bool {
    t.is_numeric()
}

/// A predicate on a json value, if the expression is one that maps.
pub(super) fn to_predicate(expr: &Expr, table: &TableDef) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let op = cmp_op(*op)?;
            // `jsonb_cmp(meta->'k', '"v"') = 0`: jsonb equality.
            if let Expr::ScalarFunction(f) = left.as_ref()
                && f.name() == "jsonb_cmp"
                && op == CmpOp::Eq
                && matches!(
                    right.as_ref(),
                    Expr::Literal(ScalarValue::Int32(Some(0)), _)
                )
            {
                let (r, v) = match (json_ref(&f.args[0], table), json_ref(&f.args[1], table)) {
                    (Some(r), None) => (r, &f.args[1]),
                    (None, Some(r)) => (r, &f.args[0]),
                    _ => return None,
                };
                return equals(&r, &Json::parse_jsonb(literal_text(v)?).ok()?);
            }
            let (side, value, op) = match (left.as_ref(), right.as_ref()) {
                (l, r @ Expr::Literal(..)) => (l, r, op),
                (l @ Expr::Literal(..), r) => (r, l, op.flip()),
                _ => return None,
            };
            if op == CmpOp::NotEq {
                return None;
            }
            let Expr::Literal(value, _) = value else {
                return None;
            };
            match side {
                // `(meta->>'n')::int > 3`: a number at the place.
                Expr::Cast(c) if numeric(c.field.data_type()) => {
                    let r = json_ref(&c.expr, table)?;
                    let v = value.cast_to(c.field.data_type()).ok()?;
                    let n = match super::scalar_value(&v)? {
                        s @ (Scalar::Int(_) | Scalar::Float(_)) => s,
                        _ => return None,
                    };
                    Some(compare(&r, op, n))
                }
                other => {
                    let r = json_ref(other, table)?;
                    match (r.text, op, value) {
                        (true, CmpOp::Eq, ScalarValue::Utf8(Some(s))) => text_equals(&r, s),
                        _ => None,
                    }
                }
            }
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let r = json_ref(expr, table)?;
            if !r.text {
                return None;
            }
            Some(Predicate::Or(
                list.iter()
                    .map(|e| text_equals(&r, literal_text(e)?))
                    .collect::<Option<Vec<_>>>()?,
            ))
        }
        Expr::IsNotNull(inner) => {
            let r = json_ref(inner, table)?;
            if r.keys.is_empty() {
                return None;
            }
            Some(Predicate::Compare {
                column: JSON_KEYS_FIELD.to_string(),
                op: CmpOp::Eq,
                value: Scalar::Text(r.payload_key()),
            })
        }
        Expr::ScalarFunction(f) if f.args.len() >= 2 => {
            let r = json_ref(&f.args[0], table)?;
            if r.text {
                return None;
            }
            match f.name() {
                "jsonb_contains" => {
                    let mut parts = Vec::new();
                    contains(
                        &r,
                        &Json::parse_jsonb(literal_text(&f.args[1])?).ok()?,
                        &mut parts,
                    );
                    all(parts)
                }
                "jsonb_exists" => has_key(&r, literal_text(&f.args[1])?),
                "jsonb_exists_any" => Some(Predicate::Or(
                    literal_texts(&f.args[1])?
                        .iter()
                        .map(|k| has_key(&r, k))
                        .collect::<Option<Vec<_>>>()?,
                )),
                "jsonb_exists_all" => all(literal_texts(&f.args[1])?
                    .iter()
                    .map(|k| has_key(&r, k))
                    .collect::<Option<Vec<_>>>()?),
                "jsonb_path_match" if f.args.len() <= 4 => {
                    let path = JsonPath::parse(literal_text(&f.args[1])?).ok()?;
                    let vars = match f.args.get(2) {
                        Some(v) => Some(Json::parse_jsonb(literal_text(v)?).ok()?),
                        None => None,
                    };
                    from_path(&r, &path.pushable(vars.as_ref())?)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::logical_expr::expr::ScalarFunction;
    use datafusion::prelude::{col, lit};

    use super::*;

    fn table() -> TableDef {
        TableDef::for_tests(
            "docs",
            &[
                ("id", ColumnType::BigInt),
                ("meta", ColumnType::Jsonb),
                ("embedding", ColumnType::Vector(3)),
            ],
        )
    }

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        let udf = crate::sql::json::functions()
            .into_iter()
            .find(|f| f.name() == name)
            .expect("a json function");
        Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), args))
    }

    fn verdict(e: Expr) -> Option<String> {
        super::super::to_predicate(&e, &table()).map(|p| p.to_string())
    }

    #[test]
    fn json_predicates_become_payload_filters() {
        let topic = call("jsonb_object_field_text", vec![col("meta"), lit("topic")]);
        assert_eq!(
            verdict(topic.clone().eq(lit("animals"))).as_deref(),
            Some("meta.topic = 'animals'")
        );
        // A text that a number or a boolean prints as matches those too.
        assert_eq!(
            verdict(topic.clone().eq(lit("3"))).as_deref(),
            Some("(meta.topic = '3' OR meta.topic = 3)")
        );
        let n = call(
            "jsonb_object_field_text",
            vec![
                call("jsonb_object_field", vec![col("meta"), lit("a")]),
                lit("n"),
            ],
        );
        assert_eq!(
            verdict(
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(n),
                    datafusion::arrow::datatypes::DataType::Int32
                ))
                .gt(lit(3))
            )
            .as_deref(),
            Some("meta.a.n > 3")
        );
        assert_eq!(
            verdict(call(
                "jsonb_contains",
                vec![
                    col("meta"),
                    lit(r#"{"k": "v", "tags": ["x", 2], "z": null, "o": {"p": true}}"#)
                ]
            ))
            .as_deref(),
            Some("(meta.k = 'v' AND meta.o.p = true AND meta.tags = 'x' AND meta.tags = 2)")
        );
        assert_eq!(
            verdict(call("jsonb_exists", vec![col("meta"), lit("k")])).as_deref(),
            Some("(meta = 'k' OR _vg_json_keys = 'meta.k')")
        );
        assert_eq!(
            verdict(call(
                "jsonb_path_match",
                vec![
                    col("meta"),
                    lit("$.page > $v && $.t == \"a\""),
                    lit(r#"{"v": 3}"#)
                ]
            ))
            .as_deref(),
            Some("(meta.page > 3 AND meta.t = 'a')")
        );
        // Left to the re-check: negations, `<>`, text ranges, unaddressable keys,
        // containers compared as text.
        assert_eq!(
            verdict(Expr::Not(Box::new(call(
                "jsonb_exists",
                vec![col("meta"), lit("k")]
            )))),
            None
        );
        assert_eq!(verdict(topic.clone().not_eq(lit("a"))), None);
        assert_eq!(verdict(topic.clone().gt(lit("a"))), None);
        assert_eq!(verdict(topic.eq(lit("[1]"))), None);
        assert_eq!(
            verdict(call("jsonb_object_field_text", vec![col("meta"), lit("a b")]).eq(lit("x"))),
            None
        );
        assert_eq!(
            verdict(call("jsonb_contains", vec![col("meta"), lit("{}")])),
            None
        );
    }

    #[test]
    fn payload_keeps_the_document_and_its_keys() {
        let mut keys = Vec::new();
        let v = crate::store::filter::json_payload(
            r#"{"a": {"b": "7"}, "l": [1, "2", {"c": null}], "bad key": 1}"#,
            "meta",
            &mut keys,
        );
        assert_eq!(
            v.to_string(),
            r#"{"a":{"b":["7",7]},"l":[1,"2",2,{"c":null}]}"#
        );
        assert_eq!(keys, vec!["meta.a.b", "meta.a", "meta.l.c", "meta.l"]);
    }
}
