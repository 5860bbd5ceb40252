//! `CREATE INDEX` on values inside a json column: `((meta->>'topic'))`,
//! `(((meta->>'n')::int))`, `((meta->'tags'))`, `((meta#>>'{a,b}'))`, and
//! `USING gin (meta)`. Each becomes a [`JsonIndexDef`]: a payload index of the vector
//! index on that path (on the document's keys for a GIN index of the whole column), so
//! that a selective filter on it is planned by the index. Results never depend on it.

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CreateIndex, DataType, Expr as SqlExpr, Value,
};

use super::statements::ident_name;
use crate::store::{JsonIndexDef, JsonIndexKind, TableDef};
use crate::types::ColumnType;

/// The json indexes `ci` asks for on `def`, or `None` if it is not an index on a json
/// column's values (it is then what it was before: a NOTICE).
pub fn requested(def: &TableDef, ci: &CreateIndex) -> Option<Vec<JsonIndexDef>> {
    let gin = ci
        .using
        .as_ref()
        .is_some_and(|u| u.to_string().eq_ignore_ascii_case("gin"));
    let mut out = Vec::new();
    for col in &ci.columns {
        let (column, path, kind) = target(def, &col.column.expr, gin)?;
        out.push((column, path, kind));
    }
    let base = ci
        .name
        .as_ref()
        .map(|n| n.0.last().and_then(|p| p.as_ident()).map(ident_name))
        .unwrap_or_else(|| {
            let what = match out.as_slice() {
                [(c, p, JsonIndexKind::Keys)] if p.is_empty() => def.columns[*c].name.clone(),
                _ => "expr".to_string(),
            };
            Some(format!("{}_{what}_idx", def.relname()))
        })?;
    let definition = format!(
        "CREATE INDEX {base} ON {}.{} USING {} ({})",
        def.schema(),
        def.relname(),
        if gin { "gin" } else { "btree" },
        ci.columns
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Some(
        out.into_iter()
            .map(|(column, path, kind)| JsonIndexDef {
                name: base.clone(),
                column,
                path,
                kind,
                definition: definition.clone(),
            })
            .collect(),
    )
}

/// The json column, the keys down to the value, and what kind of values an index
/// expression names.
fn target(def: &TableDef, e: &SqlExpr, gin: bool) -> Option<(usize, Vec<String>, JsonIndexKind)> {
    match e {
        SqlExpr::Nested(inner) => target(def, inner, gin),
        SqlExpr::Cast {
            expr, data_type, ..
        } => {
            let (c, path, kind) = target(def, expr, gin)?;
            let numeric = matches!(
                data_type,
                DataType::SmallInt(_)
                    | DataType::Int(_)
                    | DataType::Integer(_)
                    | DataType::Int2(_)
                    | DataType::Int4(_)
                    | DataType::Int8(_)
                    | DataType::BigInt(_)
                    | DataType::Real
                    | DataType::Float4
                    | DataType::Float8
                    | DataType::Float(_)
                    | DataType::Double(_)
                    | DataType::DoublePrecision
                    | DataType::Numeric(_)
                    | DataType::Decimal(_)
            );
            match (numeric, kind) {
                (true, JsonIndexKind::Keyword) if !path.is_empty() => {
                    Some((c, path, JsonIndexKind::Number))
                }
                (true, _) => None,
                (false, k) => Some((c, path, k)),
            }
        }
        SqlExpr::Identifier(id) if gin => {
            let c = json_column(def, &ident_name(id))?;
            Some((c, Vec::new(), JsonIndexKind::Keys))
        }
        SqlExpr::BinaryOp { left, op, right } => {
            let (c, mut path) = match left.as_ref() {
                SqlExpr::Identifier(id) => (json_column(def, &ident_name(id))?, Vec::new()),
                other => {
                    let (c, path, kind) = target(def, other, gin)?;
                    // Only `->` leads further into the document.
                    if kind != JsonIndexKind::Keyword || path.is_empty() {
                        return None;
                    }
                    if !matches!(
                        strip(other),
                        SqlExpr::BinaryOp {
                            op: BinaryOperator::Arrow | BinaryOperator::HashArrow,
                            ..
                        }
                    ) {
                        return None;
                    }
                    (c, path)
                }
            };
            let literal = match right.as_ref() {
                SqlExpr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => return None,
                },
                _ => return None,
            };
            match op {
                BinaryOperator::Arrow | BinaryOperator::LongArrow => path.push(literal),
                BinaryOperator::HashArrow | BinaryOperator::HashLongArrow => {
                    let inner = literal.trim().strip_prefix('{')?.strip_suffix('}')?;
                    path.extend(
                        inner
                            .split(',')
                            .map(|k| k.trim().trim_matches('"').to_string()),
                    );
                }
                _ => return None,
            }
            if !path
                .iter()
                .all(|k| crate::store::filter::addressable_key(k))
            {
                return None;
            }
            Some((c, path, JsonIndexKind::Keyword))
        }
        _ => None,
    }
}

fn strip(e: &SqlExpr) -> &SqlExpr {
    match e {
        SqlExpr::Nested(inner) => strip(inner),
        other => other,
    }
}

fn json_column(def: &TableDef, name: &str) -> Option<usize> {
    let c = def.column_index(name)?;
    matches!(def.columns[c].ty, ColumnType::Jsonb | ColumnType::Json).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn table() -> TableDef {
        TableDef::for_tests(
            "t",
            &[
                ("id", ColumnType::BigInt),
                ("meta", ColumnType::Jsonb),
                ("body", ColumnType::Text),
                ("e", ColumnType::Vector(2)),
            ],
        )
    }

    fn asked(sql: &str) -> Option<Vec<(Vec<String>, JsonIndexKind, String)>> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        let Statement::CreateIndex(ci) = stmt else {
            panic!("not CREATE INDEX: {sql}");
        };
        requested(&table(), &ci).map(|v| {
            v.into_iter()
                .inspect(|j| assert_eq!(j.column, 1))
                .map(|j| (j.path, j.kind, j.name))
                .collect()
        })
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn index_expressions_name_json_paths() {
        use JsonIndexKind::*;
        assert_eq!(
            asked("CREATE INDEX ON t ((meta->>'topic'))"),
            Some(vec![(keys(&["topic"]), Keyword, "t_expr_idx".into())])
        );
        assert_eq!(
            asked("CREATE INDEX n ON t (((meta->>'n')::int))"),
            Some(vec![(keys(&["n"]), Number, "n".into())])
        );
        assert_eq!(
            asked("CREATE INDEX x ON t USING btree ((meta -> 'a' ->> 'b'))"),
            Some(vec![(keys(&["a", "b"]), Keyword, "x".into())])
        );
        assert_eq!(
            asked("CREATE INDEX x ON t ((meta #>> '{a,b}'))"),
            Some(vec![(keys(&["a", "b"]), Keyword, "x".into())])
        );
        // LlamaIndex: a GIN index on a key's jsonb value.
        assert_eq!(
            asked("CREATE INDEX g ON t USING gin (CAST(meta -> 'tags' AS JSONB))"),
            Some(vec![(keys(&["tags"]), Keyword, "g".into())])
        );
        // A GIN index on the whole document: its keys.
        assert_eq!(
            asked("CREATE INDEX ON t USING gin (meta jsonb_path_ops)"),
            Some(vec![(vec![], Keys, "t_meta_idx".into())])
        );
        // Not indexes on json values: a plain column, a function, a text column, a key
        // that is no payload path, a number cast of a jsonb value.
        assert_eq!(asked("CREATE INDEX ON t (body)"), None);
        assert_eq!(asked("CREATE INDEX ON t (lower(body))"), None);
        assert_eq!(asked("CREATE INDEX ON t ((body || 'x'))"), None);
        assert_eq!(asked("CREATE INDEX ON t ((meta->>'a b'))"), None);
        assert_eq!(asked("CREATE INDEX ON t USING btree (meta)"), None);
    }
}
