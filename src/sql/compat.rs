//! SQL Postgres accepts that DataFusion reads otherwise, rewritten before planning:
//! functions in FROM, and the user special registers.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArguments, Ident, ObjectName, Statement, Value, visit_expressions_mut,
};

use super::pgvector::call;
use super::statements::ident_name;

/// Functions in FROM as Postgres sees them: a single-column set-returning function
/// (`generate_series`, `unnest` of one array) names its column after its alias, or after
/// itself; any other function is a one-row table of its value (`string_to_array(..) s`,
/// as Grafana reads the search path). `is_scalar` tells a scalar function's name.
pub fn from_functions(stmt: &mut Statement, is_scalar: &dyn Fn(&str) -> bool) {
    use datafusion::sql::sqlparser::ast::{
        FunctionArgumentList, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
    };
    struct Factors<'a>(&'a dyn Fn(&str) -> bool);
    impl VisitorMut for Factors<'_> {
        type Break = ();
        fn post_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_ordinality: false,
                ..
            } = t
                && array_exprs.len() == 1
            {
                let name = alias
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or_else(|| Ident::new("unnest"));
                if alias.as_ref().is_none_or(|a| a.columns.is_empty()) {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: name.clone(),
                        columns: vec![TableAliasColumnDef::from_name(name.value)],
                        at: None,
                    });
                }
                return ControlFlow::Continue(());
            }
            let TableFactor::Table {
                name,
                args: Some(args),
                alias,
                ..
            } = t
            else {
                return ControlFlow::Continue(());
            };
            let Some(function) = name.0.last().and_then(|p| p.as_ident()).map(ident_name) else {
                return ControlFlow::Continue(());
            };
            let alias_name = alias
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_else(|| Ident::new(function.clone()));
            let column = TableAliasColumnDef::from_name(alias_name.value.clone());
            let single_column = match function.as_str() {
                "generate_series" => true,
                "unnest" => args.args.len() == 1,
                _ => false,
            };
            if single_column {
                if alias.as_ref().is_none_or(|a| a.columns.is_empty()) {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: alias_name,
                        columns: vec![column],
                        at: None,
                    });
                }
            } else if (self.0)(&function) {
                let call = SqlExpr::Function(datafusion::sql::sqlparser::ast::Function {
                    name: name.clone(),
                    uses_odbc_syntax: false,
                    parameters: FunctionArguments::None,
                    args: FunctionArguments::List(FunctionArgumentList {
                        duplicate_treatment: None,
                        args: args.args.clone(),
                        clauses: vec![],
                    }),
                    filter: None,
                    null_treatment: None,
                    over: None,
                    within_group: vec![],
                });
                let sql = format!("SELECT {call} AS {alias_name}");
                let Ok(mut parsed) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                    &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                    &sql,
                ) else {
                    return ControlFlow::Continue(());
                };
                let Some(Statement::Query(subquery)) = parsed.pop() else {
                    return ControlFlow::Continue(());
                };
                *t = TableFactor::Derived {
                    lateral: false,
                    subquery,
                    alias: Some(alias.clone().unwrap_or(TableAlias {
                        explicit: true,
                        name: alias_name,
                        columns: vec![],
                        at: None,
                    })),
                    sample: None,
                };
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Factors(is_scalar));
}

/// `text::regclass` of a computed name (`format('%I.%I', s, t)::regclass`, as Metabase
/// writes it) is `to_regclass(text)`. A literal or `$n` name is the compatibility
/// parser's (a catalog subquery); an oid column cast for display is left alone.
pub fn computed_regclass(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Cast {
            expr, data_type, ..
        } = e
            && data_type
                .to_string()
                .to_ascii_lowercase()
                .trim_start_matches("pg_catalog.")
                == "regclass"
            && text_valued(expr)
        {
            *e = call("to_regclass", vec![(**expr).clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `a ^@ b` (Postgres' starts-with operator, as vecs filters names with it) is
/// `starts_with(a, b)`.
pub fn starts_with_operator(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::BinaryOp {
            left,
            op: datafusion::sql::sqlparser::ast::BinaryOperator::PGStartsWith,
            right,
        } = e
        {
            *e = call("starts_with", vec![(**left).clone(), (**right).clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// An expression that is text whatever its inputs: a string function's result, a
/// concatenation, or a cast to text.
fn text_valued(e: &SqlExpr) -> bool {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, DataType};
    match e {
        SqlExpr::Nested(inner) => text_valued(inner),
        SqlExpr::Cast { data_type, .. } => matches!(
            data_type,
            DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_)
        ),
        SqlExpr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => true,
        SqlExpr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
            matches!(
                ident_name(i).as_str(),
                "format" | "concat" | "concat_ws" | "quote_ident" | "lower" | "upper"
            )
        }),
        _ => false,
    }
}

/// `user`, `current_role` (and `current_user`, which the compatibility parser already
/// made `session_user()`): the session's own user, from the per-session `session_user`.
pub fn user_registers(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Function(f) = e
            && matches!(f.args, FunctionArguments::None)
            && f.name.0.len() == 1
            && f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| matches!(ident_name(i).as_str(), "user" | "current_role"))
        {
            f.name = ObjectName::from(vec![Ident::new("session_user")]);
        } else if let SqlExpr::Identifier(i) = e
            && i.quote_style.is_none()
            && i.value.eq_ignore_ascii_case("current_role")
        {
            *e = session_user_call();
        }
        ControlFlow::<()>::Continue(())
    });
}

fn session_user_call() -> SqlExpr {
    SqlExpr::Function(datafusion::sql::sqlparser::ast::Function {
        name: ObjectName::from(vec![Ident::new("session_user")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::None,
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Postgres' `format(formatstr, args...)`: `%s` (the value as text, NULL as nothing), `%I`
/// (an identifier, quoted when it must be), `%L` (a literal, `NULL` for NULL), `%%`, and
/// `%n$s` for the n-th argument. Metabase names tables to `regclass` with it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Format {
    signature: datafusion::logical_expr::Signature,
}

impl Format {
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(Format {
            signature: datafusion::logical_expr::Signature::variadic_any(
                datafusion::logical_expr::Volatility::Stable,
            ),
        })
    }
}

/// An identifier as Postgres' `quote_ident` writes it.
pub fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// One row of `format`.
fn format_row(fmt: &str, args: &[Option<String>]) -> Result<String, String> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        let kind = loop {
            match chars.next() {
                Some(k @ ('s' | 'I' | 'L' | '%')) => break k,
                Some(d) if d.is_ascii_digit() || d == '$' => spec.push(d),
                _ => return Err("unrecognized format() type specifier".into()),
            }
        };
        if kind == '%' {
            out.push('%');
            continue;
        }
        let index = match spec.strip_suffix('$') {
            Some(n) => {
                n.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("invalid argument position in format()")?
                    - 1
            }
            None => next,
        };
        next = index + 1;
        let arg = args
            .get(index)
            .ok_or("too few arguments for format()")?
            .as_deref();
        match (kind, arg) {
            ('s', Some(v)) => out.push_str(v),
            ('s', None) => {}
            ('I', Some(v)) => out.push_str(&quote_ident(v)),
            ('I', None) => {
                return Err("null values cannot be formatted as an SQL identifier".into());
            }
            ('L', Some(v)) => out.push_str(&format!("'{}'", v.replace('\'', "''"))),
            _ => out.push_str("NULL"),
        }
    }
    Ok(out)
}

impl datafusion::logical_expr::ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringArray};
        use datafusion::arrow::datatypes::DataType;
        let n = args.number_rows;
        let mut texts = Vec::with_capacity(args.args.len());
        for a in &args.args {
            texts.push(datafusion::arrow::compute::cast(
                &a.clone().into_array(n)?,
                &DataType::Utf8,
            )?);
        }
        let texts: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        let Some((fmt, rest)) = texts.split_first() else {
            return Err(datafusion::error::DataFusionError::Plan(
                "format() needs a format string".into(),
            ));
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if fmt.is_null(i) {
                out.push(None);
                continue;
            }
            let row: Vec<Option<String>> = rest
                .iter()
                .map(|a| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect();
            out.push(Some(
                format_row(fmt.value(i), &row)
                    .map_err(datafusion::error::DataFusionError::Execution)?,
            ));
        }
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            std::sync::Arc::new(StringArray::from(out)),
        ))
    }
}

/// `x::uuid` (and `uuid '...'`): DataFusion has no uuid type, so the cast becomes
/// `vg_cast_uuid(x)`, text in uuid's canonical form announced as uuid (22P02 for text that
/// is not one). SQLAlchemy writes every uuid parameter this way (`%(id)s::UUID`).
pub fn uuid_casts(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType};
    let _ = visit_expressions_mut(stmt, |e| {
        let inner = match e {
            SqlExpr::Cast {
                expr,
                data_type: DataType::Uuid,
                ..
            } => std::mem::replace(expr.as_mut(), SqlExpr::value(Value::Null)),
            SqlExpr::TypedString(ts) if ts.data_type == DataType::Uuid => {
                SqlExpr::Value(ts.value.clone())
            }
            // `ARRAY[...]::uuid[]` (an array text literal is one by now): each element
            // cast; any other `x::uuid[]` is its text array.
            SqlExpr::Cast {
                expr,
                data_type: DataType::Array(ArrayElemTypeDef::SquareBracket(element, _)),
                ..
            } if **element == DataType::Uuid => {
                let mut inner = std::mem::replace(expr.as_mut(), SqlExpr::value(Value::Null));
                if let SqlExpr::Array(a) = &mut inner {
                    for item in &mut a.elem {
                        let cast = matches!(item, SqlExpr::Value(v) if v.value == Value::Null)
                            || matches!(item, SqlExpr::Function(f) if f.name.to_string() == "vg_cast_uuid");
                        if !cast {
                            let x = std::mem::replace(item, SqlExpr::value(Value::Null));
                            *item = call("vg_cast_uuid", vec![x]);
                        }
                    }
                }
                *e = inner;
                return ControlFlow::Continue(());
            }
            _ => return ControlFlow::<()>::Continue(()),
        };
        *e = call("vg_cast_uuid", vec![inner]);
        ControlFlow::Continue(())
    });
}

/// Numeric types as Postgres reads them in casts. `x::float` is Postgres' `double
/// precision` (DataFusion's SQL `FLOAT` is 32-bit), `float(p)` a `real` up to 24 bits of
/// precision and a `double precision` above; also as an array's element (`x::float[]`,
/// what SQLAlchemy writes for `ARRAY(Float)`). `numeric(p, s)` above DataFusion's
/// largest precision, 38 (Postgres takes up to 1000: Django's `Round` casts to
/// `numeric(1000, 15)`, which DataFusion wrapped round to 232), is `numeric(38, s)`.
pub fn number_casts(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Cast { data_type, .. } = e {
            postgres_number(data_type);
        }
        ControlFlow::<()>::Continue(())
    });
}

fn postgres_number(t: &mut datafusion::sql::sqlparser::ast::DataType) {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType, ExactNumberInfo};
    const WIDEST: u64 = 38;
    match t {
        DataType::Float(info) => {
            *t = match info {
                ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Real,
                _ => DataType::DoublePrecision,
            }
        }
        DataType::Numeric(info) | DataType::Decimal(info) | DataType::Dec(info) => match info {
            ExactNumberInfo::Precision(p) if *p > WIDEST => *p = WIDEST,
            ExactNumberInfo::PrecisionAndScale(p, s) if *p > WIDEST => {
                *p = WIDEST;
                *s = (*s).min(WIDEST as i64);
            }
            _ => {}
        },
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(element, _) | ArrayElemTypeDef::AngleBracket(element),
        ) => postgres_number(element),
        _ => {}
    }
}

/// `mod(a, b)`: Postgres' remainder function, DataFusion's `a % b` (Django's `Mod`).
pub fn mod_function(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, FunctionArg, FunctionArgExpr};
    let _ = visit_expressions_mut(stmt, |e| {
        let SqlExpr::Function(f) = e else {
            return ControlFlow::<()>::Continue(());
        };
        if f.name.0.len() != 1
            || f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_none_or(|i| ident_name(i) != "mod")
        {
            return ControlFlow::Continue(());
        }
        let FunctionArguments::List(list) = &f.args else {
            return ControlFlow::Continue(());
        };
        if let [
            FunctionArg::Unnamed(FunctionArgExpr::Expr(a)),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(b)),
        ] = list.args.as_slice()
            && list.duplicate_treatment.is_none()
            && list.clauses.is_empty()
        {
            *e = SqlExpr::Nested(Box::new(SqlExpr::BinaryOp {
                left: Box::new(SqlExpr::Nested(Box::new(a.clone()))),
                op: BinaryOperator::Modulo,
                right: Box::new(SqlExpr::Nested(Box::new(b.clone()))),
            }));
        }
        ControlFlow::Continue(())
    });
}

/// `x::varchar(n)`: an explicit cast to a limited `varchar` cuts the value to `n`
/// characters, as in Postgres (DataFusion's cast would keep it whole); written as
/// `left(x::varchar, n)`. (Assigning a longer value to a `varchar(n)` column is an
/// error instead, checked by the write.) Postgres' one-byte `"char"` (the type of
/// `pg_class.relkind`, which pg_dump casts to) is text of one character the same way.
/// A cast to `varchar(n)[]` cuts each element the same way (`vg_varchar_elements`).
pub fn varchar_casts(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType};
    let _ = visit_expressions_mut(stmt, |e| {
        let SqlExpr::Cast { data_type, .. } = e else {
            return ControlFlow::<()>::Continue(());
        };
        let (n, function) = match data_type {
            DataType::Array(
                ArrayElemTypeDef::SquareBracket(element, None)
                | ArrayElemTypeDef::AngleBracket(element),
            ) => match limited_varchar(element) {
                Some(n) => {
                    **element = DataType::Varchar(None);
                    (n, "vg_varchar_elements")
                }
                None => return ControlFlow::Continue(()),
            },
            t => match limited_varchar(t) {
                Some(n) => {
                    *t = DataType::Varchar(None);
                    (n, "left")
                }
                None => return ControlFlow::Continue(()),
            },
        };
        let whole = std::mem::replace(e, SqlExpr::value(Value::Null));
        *e = call(
            function,
            vec![whole, SqlExpr::value(Value::Number(n.to_string(), false))],
        );
        ControlFlow::Continue(())
    });
}

/// The length of `varchar(n)` (or `"char"`, one).
fn limited_varchar(t: &datafusion::sql::sqlparser::ast::DataType) -> Option<u64> {
    use datafusion::sql::sqlparser::ast::{CharacterLength, DataType};
    match t {
        DataType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. })) => {
            Some(*length)
        }
        DataType::Custom(name, modifiers)
            if modifiers.is_empty()
                && matches!(name.0.last().and_then(|p| p.as_ident()),
                    Some(i) if i.quote_style == Some('"') && i.value == "char") =>
        {
            Some(1)
        }
        _ => None,
    }
}

/// `vg_varchar_elements(list, n)`: each string of each list cut to its first `n`
/// characters (what [`varchar_casts`] makes of a cast to `varchar(n)[]`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VarcharElements {
    signature: datafusion::logical_expr::Signature,
}

impl VarcharElements {
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(VarcharElements {
            signature: datafusion::logical_expr::Signature::any(
                2,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for VarcharElements {
    fn name(&self) -> &str {
        "vg_varchar_elements"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(crate::types::ColumnType::TextArray.arrow_type())
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, ListArray, StringArray};
        use datafusion::arrow::datatypes::{DataType, Int64Type};
        use datafusion::logical_expr::ColumnarValue;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let lists = args.args[0].clone().into_array(args.number_rows)?;
        let n = args.args[1].clone().into_array(args.number_rows)?;
        let n = datafusion::arrow::compute::cast(&n, &DataType::Int64)?;
        let n = n.as_primitive::<Int64Type>();
        let to = crate::types::ColumnType::TextArray.arrow_type();
        let lists = datafusion::arrow::compute::cast(&lists, &to)?;
        let lists = lists.as_list::<i32>();
        let values = lists.values().as_string::<i32>();
        let offsets = lists.value_offsets();
        let mut cut: Vec<Option<String>> = Vec::with_capacity(values.len());
        for row in 0..lists.len() {
            let keep = if n.is_null(row) {
                usize::MAX
            } else {
                usize::try_from(n.value(row)).unwrap_or(0)
            };
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                cut.push(
                    (!values.is_null(i)).then(|| values.value(i).chars().take(keep).collect()),
                );
            }
        }
        let DataType::List(field) = to else {
            return Err(datafusion::error::DataFusionError::Internal(
                "text[] is not a list".into(),
            ));
        };
        let out = ListArray::try_new(
            field,
            lists.offsets().clone(),
            std::sync::Arc::new(StringArray::from(cut)),
            lists.nulls().cloned(),
        )?;
        super::columnar(std::sync::Arc::new(out), scalar)
    }
}

/// `'\x6869'::bytea` (and `bytea '...'`): a string literal read as bytea is its input
/// form (hex, or the escape form) decoded, as in Postgres; DataFusion would take the
/// text's own bytes. (A cast of a text value keeps its bytes in Postgres too.)
pub fn bytea_literals(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::DataType;
    let _ = visit_expressions_mut(stmt, |e| {
        let text = match e {
            SqlExpr::Cast {
                expr,
                data_type: DataType::Bytea,
                ..
            } => match expr.as_ref() {
                SqlExpr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => return ControlFlow::<()>::Continue(()),
                },
                _ => return ControlFlow::<()>::Continue(()),
            },
            SqlExpr::TypedString(ts) if ts.data_type == DataType::Bytea => match &ts.value.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => return ControlFlow::<()>::Continue(()),
            },
            _ => return ControlFlow::<()>::Continue(()),
        };
        // Input that is not bytea is left to fail as it does.
        if let Ok(bytes) = crate::types::parse_bytea(&text) {
            let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
            *e = SqlExpr::value(Value::HexStringLiteral(hex));
        }
        ControlFlow::Continue(())
    });
}

/// `gen_random_uuid()` (and the uuid-ossp name `uuid_generate_v4()`): a random
/// (version 4) uuid per row, typed uuid.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RandomUuid {
    signature: datafusion::logical_expr::Signature,
    aliases: Vec<String>,
}

impl RandomUuid {
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(RandomUuid {
            signature: datafusion::logical_expr::Signature::nullary(
                datafusion::logical_expr::Volatility::Volatile,
            ),
            aliases: vec!["uuid_generate_v4".into()],
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for RandomUuid {
    fn name(&self) -> &str {
        "gen_random_uuid"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::FieldRef> {
        Ok(std::sync::Arc::new(
            crate::types::ColumnType::Uuid.arrow_field("gen_random_uuid", false),
        ))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        let out: datafusion::arrow::array::StringArray = (0..args.number_rows)
            .map(|_| Some(uuid::Uuid::new_v4().hyphenated().to_string()))
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            std::sync::Arc::new(out),
        ))
    }
}

/// The function [`uuid_casts`] makes of a cast to uuid.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CastUuid {
    signature: datafusion::logical_expr::Signature,
}

impl CastUuid {
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(CastUuid {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for CastUuid {
    fn name(&self) -> &str {
        "vg_cast_uuid"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(
        &self,
        _arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::error::Result<datafusion::arrow::datatypes::FieldRef> {
        Ok(std::sync::Arc::new(
            crate::types::ColumnType::Uuid.arrow_field("uuid", true),
        ))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringArray};
        use datafusion::arrow::datatypes::DataType;
        let scalar = matches!(
            args.args[0],
            datafusion::logical_expr::ColumnarValue::Scalar(_)
        );
        let array = args.args[0].clone().into_array(args.number_rows)?;
        let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut out = Vec::with_capacity(text.len());
        for i in 0..text.len() {
            if text.is_null(i) {
                out.push(None);
                continue;
            }
            let value = text.value(i);
            let u = uuid::Uuid::parse_str(value.trim()).map_err(|_| {
                datafusion::error::DataFusionError::from(crate::error::Error::InvalidText(format!(
                    "invalid input syntax for type uuid: \"{value}\""
                )))
            })?;
            out.push(Some(u.hyphenated().to_string()));
        }
        let out = StringArray::from(out);
        super::columnar(std::sync::Arc::new(out), scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::format_row;

    #[test]
    fn format_writes_text_identifiers_and_literals() {
        let args = [
            Some("public".to_string()),
            Some("My Table".to_string()),
            None,
        ];
        assert_eq!(
            format_row("%I.%I", &args).as_deref(),
            Ok("public.\"My Table\"")
        );
        assert_eq!(
            format_row("%s|%L|%L|%%|%2$s|%s", &args).as_deref(),
            Ok("public|'My Table'|NULL|%|My Table|")
        );
        assert!(format_row("%I", &[None]).is_err());
        assert!(format_row("%s %s", &args[..1]).is_err());
    }

    use crate::sql::rewritten;

    #[test]
    fn limited_varchar_casts_cut_scalars_and_elements() {
        assert_eq!(
            rewritten(
                "SELECT x::varchar(3), $1::varchar(20)[], CAST(y AS character varying(2)[]), z::varchar[]",
                super::varchar_casts
            ),
            "SELECT left(x::VARCHAR, 3), vg_varchar_elements($1::VARCHAR[], 20), \
             vg_varchar_elements(CAST(y AS VARCHAR[]), 2), z::VARCHAR[]"
        );
    }

    #[test]
    fn float_is_double_precision_unless_its_precision_is_small() {
        assert_eq!(
            rewritten(
                "SELECT a::float, b::float(24), c::float(25), $1::FLOAT[], d::float8",
                super::number_casts
            ),
            "SELECT a::DOUBLE PRECISION, b::REAL, c::DOUBLE PRECISION, $1::DOUBLE PRECISION[], d::FLOAT8"
        );
    }

    #[test]
    fn numerics_wider_than_38_digits_are_38() {
        assert_eq!(
            rewritten(
                "SELECT ROUND((x)::numeric(1000, 15), 0), y::decimal(50), z::numeric(10, 2)",
                super::number_casts
            ),
            "SELECT ROUND((x)::NUMERIC(38,15), 0), y::DECIMAL(38), z::NUMERIC(10,2)"
        );
    }

    #[test]
    fn mod_is_the_remainder_operator() {
        assert_eq!(
            rewritten(
                "SELECT MOD(id, 4), mod(a + 1, b), x.mod(1, 2)",
                super::mod_function
            ),
            "SELECT ((id) % (4)), ((a + 1) % (b)), x.mod(1, 2)"
        );
    }
}

/// `date_trunc`'s units as Postgres spells them (`'milliseconds'`, `'hours'`, `'min'`):
/// DataFusion knows only the singular names. A third argument naming a zone that is UTC
/// all year (the one vectorgate keeps timestamps in) is dropped; any other zone is left
/// for the planner to refuse.
pub fn date_trunc_units(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr};
    let _ = visit_expressions_mut(stmt, |e| {
        let SqlExpr::Function(f) = e else {
            return ControlFlow::<()>::Continue(());
        };
        if f.name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_none_or(|i| ident_name(i) != "date_trunc")
        {
            return ControlFlow::Continue(());
        }
        let FunctionArguments::List(list) = &mut f.args else {
            return ControlFlow::Continue(());
        };
        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))) =
            list.args.first_mut()
            && let Value::SingleQuotedString(unit) = &mut v.value
            && let Some(singular) = date_unit(unit)
        {
            *unit = singular.to_string();
        }
        if list.args.len() == 3
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))) =
                list.args.last()
            && let Value::SingleQuotedString(zone) = &v.value
            && super::clock::time_zone(zone.trim()).is_some_and(|z| z.utc)
        {
            list.args.pop();
        }
        ControlFlow::Continue(())
    });
}

/// DataFusion's name of a unit Postgres reads (`None`: one it does not).
fn date_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.trim().to_ascii_lowercase().as_str() {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" | "useconds" => "microsecond",
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "mseconds" => "millisecond",
        "second" | "seconds" | "s" | "sec" | "secs" => "second",
        "minute" | "minutes" | "m" | "min" | "mins" => "minute",
        "hour" | "hours" | "h" | "hr" | "hrs" => "hour",
        "day" | "days" | "d" => "day",
        "week" | "weeks" | "w" => "week",
        "month" | "months" | "mon" | "mons" => "month",
        "quarter" | "qtr" => "quarter",
        "year" | "years" | "y" | "yr" | "yrs" => "year",
        _ => return None,
    })
}

/// `LIKE pattern ESCAPE 'c'` with an escape character other than backslash (SQLAlchemy
/// escapes `_` with `/` when it lists schemas): DataFusion knows only backslash, so the
/// pattern is rewritten to backslash escapes (in place for a literal, by
/// `regexp_replace` for a computed one) and the ESCAPE clause dropped.
pub fn like_escapes(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::Value;
    let text = |s: &str| SqlExpr::Value(Value::SingleQuotedString(s.to_string()).into());
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Like {
            pattern,
            escape_char,
            ..
        }
        | SqlExpr::ILike {
            pattern,
            escape_char,
            ..
        } = e
            && let Some(Value::SingleQuotedString(c)) = escape_char.as_ref().map(|v| &v.value)
            && let Some(esc) = c.chars().next()
            && c.chars().count() == 1
            && esc != '\\'
        {
            if let SqlExpr::Value(v) = pattern.as_ref()
                && let Value::SingleQuotedString(p) = &v.value
            {
                **pattern = text(&backslash_escapes(p, esc));
            } else {
                let doubled = call(
                    "replace",
                    vec![(**pattern).clone(), text("\\"), text("\\\\")],
                );
                let class = regex_syntax_escape(esc);
                **pattern = call(
                    "regexp_replace",
                    vec![
                        doubled,
                        text(&format!("{class}(.)")),
                        text("\\\\\\1"),
                        text("g"),
                    ],
                );
            }
            *escape_char = None;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// DataFusion's simplifier merges `x NOT IN (a) OR x NOT IN (b)` into `x NOT IN ()` and
/// folds that to TRUE, also where `x` is NULL (SQL says NULL there, so the row is not
/// selected). In a WHERE or HAVING clause, where NULL and FALSE select alike, every
/// `NOT IN` (after NOTs above it are moved down to it, as De Morgan allows in three-valued
/// logic) is guarded with `x IS NOT NULL`, so no merge lets a NULL `x` through.
pub fn guard_not_in(stmt: &mut Statement) {
    use datafusion::sql::sqlparser::ast::{Query, SetExpr, VisitMut, VisitorMut};
    struct Guard;
    fn body(set: &mut SetExpr) {
        match set {
            SetExpr::Select(s) => {
                for clause in [&mut s.selection, &mut s.having] {
                    if let Some(e) = clause.take() {
                        *clause = Some(selecting(e));
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                body(left);
                body(right);
            }
            _ => {}
        }
    }
    impl VisitorMut for Guard {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            body(&mut q.body);
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Guard);
}

/// A condition that selects rows (NULL as FALSE), with its NOT INs guarded.
fn selecting(e: SqlExpr) -> SqlExpr {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, UnaryOperator};
    match e {
        SqlExpr::BinaryOp {
            left,
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            right,
        } => SqlExpr::BinaryOp {
            left: Box::new(selecting(*left)),
            op,
            right: Box::new(selecting(*right)),
        },
        SqlExpr::Nested(inner) => SqlExpr::Nested(Box::new(selecting(*inner))),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => match negated(*expr) {
            Ok(pushed) => selecting(pushed),
            Err(leaf) => SqlExpr::UnaryOp {
                op: UnaryOperator::Not,
                expr: leaf,
            },
        },
        SqlExpr::InList {
            expr,
            list,
            negated: true,
        } => SqlExpr::Nested(Box::new(SqlExpr::BinaryOp {
            left: Box::new(SqlExpr::InList {
                expr: expr.clone(),
                list,
                negated: true,
            }),
            op: BinaryOperator::And,
            right: Box::new(SqlExpr::IsNotNull(expr)),
        })),
        other => other,
    }
}

/// `NOT e` with the NOT moved one level down (`Ok`), or `e` back where it cannot be.
fn negated(e: SqlExpr) -> Result<SqlExpr, Box<SqlExpr>> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, UnaryOperator};
    let not = |e: SqlExpr| SqlExpr::UnaryOp {
        op: UnaryOperator::Not,
        expr: Box::new(SqlExpr::Nested(Box::new(e))),
    };
    match e {
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => Ok(SqlExpr::BinaryOp {
            left: Box::new(not(*left)),
            op: BinaryOperator::Or,
            right: Box::new(not(*right)),
        }),
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => Ok(SqlExpr::BinaryOp {
            left: Box::new(not(*left)),
            op: BinaryOperator::And,
            right: Box::new(not(*right)),
        }),
        SqlExpr::Nested(inner) => negated(*inner).map(|e| SqlExpr::Nested(Box::new(e))),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(*expr),
        SqlExpr::InList {
            expr,
            list,
            negated,
        } => Ok(SqlExpr::InList {
            expr,
            list,
            negated: !negated,
        }),
        other => Err(Box::new(other)),
    }
}

/// A LIKE pattern with escape character `esc` written with backslash escapes.
fn backslash_escapes(pattern: &str, esc: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == esc {
            out.push('\\');
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// `c` as a regular expression matching itself.
fn regex_syntax_escape(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        format!("\\{c}")
    }
}

#[cfg(test)]
mod like_tests {
    #[test]
    fn other_escape_characters_become_backslashes() {
        assert_eq!(super::backslash_escapes("pg/_%", '/'), "pg\\_%");
        assert_eq!(super::backslash_escapes("a//b\\c", '/'), "a\\/b\\\\c");
    }
}

/// `'pg_class'::regclass` (also `'pg_catalog.pg_class'::pg_catalog.regclass`) of a
/// system catalog is its fixed OID, which the catalog rows that name it carry (Django's
/// `get_sequences` joins `pg_depend` with `d.classid = 'pg_class'::regclass`). The
/// compatibility parser would look an unqualified name up in `public` only and find
/// nothing. Other names are left to it.
pub fn system_regclass(sql: &str) -> Option<String> {
    const CASTS: [&str; 2] = ["::pg_catalog.regclass", "::regclass"];
    if !CASTS.iter().any(|c| super::pgvector::mentions(sql, c)) {
        return None;
    }
    let oid_of = |name: &str| {
        let name = name.to_ascii_lowercase();
        let name = name
            .strip_prefix("pg_catalog.")
            .unwrap_or(&name)
            .to_string();
        // Postgres' own OIDs of the system catalogs, which other catalog rows name
        // (`pg_depend.classid`, `pg_description.classoid`).
        super::pgvector::CATALOG_OIDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, oid)| *oid)
    };
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut changed = false;
    // Literals one after another (a doubled quote inside one splits it in two, which
    // keeps the pairing).
    while let Some(open) = rest.find('\'') {
        let Some(len) = rest[open + 1..].find('\'') else {
            break;
        };
        let literal = &rest[open + 1..open + 1 + len];
        let after = &rest[open + 2 + len..];
        let cast = CASTS.iter().find(|c| {
            after
                .get(..c.len())
                .is_some_and(|a| a.eq_ignore_ascii_case(c))
        });
        match (cast, oid_of(literal)) {
            (Some(cast), Some(oid)) => {
                out.push_str(&rest[..open]);
                out.push_str(&oid.to_string());
                rest = &after[cast.len()..];
                changed = true;
            }
            _ => {
                out.push_str(&rest[..open + 2 + len]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// `a OPERATOR(pg_catalog.=) b` is `a = b`: the qualified operator syntax psql and
/// pg_dump write for a name pattern (`\d name`, `pg_dump -t name`), which the parser
/// takes only for some operators and never before `ANY`. Text in quotes is left alone.
pub fn qualified_operators(sql: &str) -> Option<String> {
    const OPEN: &str = "operator(";
    if !super::pgvector::mentions(sql, OPEN) {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let lowered = sql.to_ascii_lowercase();
    let mut rest = sql;
    let mut changed = false;
    loop {
        // The next quote or OPERATOR( outside quotes, whichever comes first.
        let quote = rest.find(['\'', '"']);
        let op = lowered[sql.len() - rest.len()..].find(OPEN);
        match (quote, op) {
            (Some(q), o) if o.is_none_or(|o| q < o) => {
                let mark = &rest[q..q + 1];
                let end = rest[q + 1..].find(mark).map_or(rest.len(), |e| q + 2 + e);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            (_, Some(o)) => {
                let inner = &rest[o + OPEN.len()..];
                let close = inner.find(')');
                let name = close.map(|c| inner[..c].trim());
                let operator = name.and_then(|n| {
                    let lower = n.to_ascii_lowercase();
                    let op = lower.strip_prefix("pg_catalog.")?.trim_start().to_string();
                    (!op.is_empty() && op.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c)))
                        .then_some(op)
                });
                let boundary = o == 0
                    || !rest[..o]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_');
                match (operator, close) {
                    (Some(op), Some(c)) if boundary => {
                        out.push_str(&rest[..o]);
                        out.push(' ');
                        out.push_str(&op);
                        out.push(' ');
                        rest = &inner[c + 1..];
                        changed = true;
                    }
                    _ => {
                        out.push_str(&rest[..o + OPEN.len()]);
                        rest = inner;
                    }
                }
            }
            _ => break,
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod qualified_operator_tests {
    use super::qualified_operators;

    #[test]
    fn a_qualified_operator_is_the_operator() {
        assert_eq!(
            qualified_operators(
                "SELECT c.oid FROM pg_class c WHERE c.relkind OPERATOR(pg_catalog.=) ANY (array['r']) AND c.relname OPERATOR(pg_catalog.~) '^(t)$'"
            )
            .as_deref(),
            Some("SELECT c.oid FROM pg_class c WHERE c.relkind  =  ANY (array['r']) AND c.relname  ~  '^(t)$'")
        );
        // Quoted text keeps it; other schemas' operators are not ours to drop.
        assert_eq!(
            qualified_operators("SELECT 'a OPERATOR(pg_catalog.=) b', x OPERATOR(s.=) y"),
            None
        );
    }
}

#[cfg(test)]
mod system_regclass_tests {
    use super::system_regclass;

    #[test]
    fn system_catalog_names_become_their_oids() {
        assert_eq!(
            system_regclass("SELECT 1 WHERE d.classid = 'pg_class'::regclass AND x = 'pg_catalog.pg_type'::pg_catalog.regclass").as_deref(),
            Some("SELECT 1 WHERE d.classid = 1259 AND x = 1247")
        );
        assert_eq!(system_regclass("SELECT 'docs'::regclass, 'it''s'"), None);
    }
}
