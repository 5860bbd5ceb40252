//! Sequences in SQL: `CREATE SEQUENCE`, `DROP SEQUENCE`, the sequences `serial` and
//! identity columns own, and the functions `nextval`, `currval`, `setval` and `lastval`
//! (DataFusion async functions, one set per session: `currval` is the session's own).
//! The values come from [`crate::engine::sequences`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{DataType as SqlType, Expr as SqlExpr, SequenceOptions};

use crate::engine::Core;
use crate::engine::sequences::type_bounds;
use crate::error::{Error, Result};
use crate::store::SequenceDef;
use crate::types::{ColumnType, Value};

use super::statements::literal_value;

/// What a session's sequence functions remember: `currval` per sequence, `lastval`.
#[derive(Debug, Default)]
pub struct SessionValues {
    last: parking_lot::Mutex<(HashMap<String, i64>, Option<i64>)>,
}

impl SessionValues {
    pub(crate) fn note(&self, name: &str, values: &[i64]) {
        if let Some(&v) = values.last() {
            let mut last = self.last.lock();
            last.0.insert(name.to_string(), v);
            last.1 = Some(v);
        }
    }
}

/// A sequence's definition from `CREATE SEQUENCE`'s options (or an identity column's),
/// with Postgres' defaults for what they leave out.
pub fn sequence_def(
    name: String,
    schema: Option<String>,
    ty: Option<ColumnType>,
    options: &[SequenceOptions],
    owned_by: Option<(String, String)>,
) -> Result<SequenceDef> {
    let ty = ty.unwrap_or(ColumnType::BigInt);
    let int = |e: &SqlExpr, what: &str| -> Result<i64> {
        match literal_value(e) {
            Some(Value::Int(i)) => Ok(i),
            _ => Err(Error::Syntax(format!("{what} must be an integer, got {e}"))),
        }
    };
    let (mut increment, mut min, mut max, mut start, mut cycle) = (1, None, None, None, false);
    for o in options {
        match o {
            SequenceOptions::IncrementBy(e, _) => increment = int(e, "INCREMENT")?,
            SequenceOptions::MinValue(e) => {
                min = e.as_ref().map(|e| int(e, "MINVALUE")).transpose()?
            }
            SequenceOptions::MaxValue(e) => {
                max = e.as_ref().map(|e| int(e, "MAXVALUE")).transpose()?
            }
            SequenceOptions::StartWith(e, _) => start = Some(int(e, "START")?),
            SequenceOptions::Cache(e) => {
                int(e, "CACHE")?;
            }
            SequenceOptions::Cycle(no) => cycle = !*no,
        }
    }
    if increment == 0 {
        return Err(Error::InvalidParameter("INCREMENT must not be zero".into()));
    }
    let (lo, hi) = type_bounds(&ty);
    let min = min.unwrap_or(if increment > 0 { 1 } else { lo });
    let max = max.unwrap_or(if increment > 0 { hi } else { -1 });
    if min < lo || max > hi {
        return Err(Error::InvalidParameter(format!(
            "MINVALUE ({min}) and MAXVALUE ({max}) must be within the range of type {}",
            ty.sql_name()
        )));
    }
    if min >= max {
        return Err(Error::InvalidParameter(format!(
            "MINVALUE ({min}) must be less than MAXVALUE ({max})"
        )));
    }
    let start = start.unwrap_or(if increment > 0 { min } else { max });
    if start < min || start > max {
        return Err(Error::InvalidParameter(format!(
            "START value ({start}) cannot be outside MINVALUE ({min}) and MAXVALUE ({max})"
        )));
    }
    Ok(SequenceDef {
        schema,
        name,
        ty,
        start,
        increment,
        min,
        max,
        cycle,
        owned_by,
        created: Some(uuid::Uuid::new_v4().as_u64_pair().0),
    })
}

/// The type `CREATE SEQUENCE ... AS type` names.
pub fn sequence_type(t: &SqlType) -> Result<ColumnType> {
    match t.to_string().to_ascii_lowercase().as_str() {
        "smallint" | "int2" => Ok(ColumnType::SmallInt),
        "int" | "integer" | "int4" => Ok(ColumnType::Int),
        "bigint" | "int8" => Ok(ColumnType::BigInt),
        other => Err(Error::InvalidParameter(format!(
            "sequence type must be smallint, integer, or bigint, not {other}"
        ))),
    }
}

/// The sequence a `nextval('name')` (or `nextval('name'::regclass)`) default names.
pub fn nextval_of(e: &SqlExpr) -> Option<String> {
    let SqlExpr::Function(f) = e else {
        return None;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    if name.rsplit('.').next() != Some("nextval") {
        return None;
    }
    let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    // The second argument, if any, is the occurrence number of `number_nextvals`.
    let (1 | 2) = list.args.len() else {
        return None;
    };
    let datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(
        datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(arg),
    ) = &list.args[0]
    else {
        return None;
    };
    let arg = match arg {
        SqlExpr::Cast { expr, .. } => expr.as_ref(),
        other => other,
    };
    match literal_value(arg)? {
        Value::Text(s) => Some(bare(&s)),
        _ => None,
    }
}

/// The sequence a function's argument names: `'s'::regclass` reaches it as the
/// sequence's OID.
fn by_oid(core: &crate::engine::Core, name: String) -> String {
    if let Ok(oid) = name.parse::<i32>()
        && !core.has_sequence(&name)
        && let Some(def) = core
            .sequence_defs()
            .into_iter()
            .find(|d| super::catalog::sequence_oid(&d.name) == oid)
    {
        return def.name.clone();
    }
    name
}

/// A relation's name in the catalog from its text in a `'...'::regclass` or a
/// function's argument: `s`, `"s"` and `public.s` -> `s`; `vecs.s` -> `vecs.s`
/// ([`crate::store::qualified`]).
pub(crate) fn bare(name: &str) -> String {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    for c in name.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    match parts.as_slice() {
        [.., schema, rel] => crate::store::qualified(schema, rel),
        [rel] => rel.clone(),
        [] => String::new(),
    }
}

/// `pg_get_serial_sequence(table, column)`: `public.<sequence>` for a serial or identity
/// column, NULL for any other (Django resets sequences through it).
fn serial_sequence(core: Weak<Core>) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (tables, columns) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
            let core = core.upgrade();
            let out: datafusion::arrow::array::StringArray = tables
                .iter()
                .zip(columns.iter())
                .map(|(t, c)| {
                    let def = core.as_ref()?.table(&bare(t?)).ok()?;
                    let col = &def.columns[def.column_index(&bare(c?))?];
                    let seq = nextval_of(&super::defaults::parse(col.default.as_deref()?).ok()?)?;
                    Some(if seq.contains('.') {
                        seq
                    } else {
                        format!("public.{seq}")
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// The session's `nextval`, `currval`, `setval`, `lastval` and `pg_get_serial_sequence`.
pub fn functions(core: Weak<Core>, values: Arc<SessionValues>) -> Vec<ScalarUDF> {
    let serial = serial_sequence(core.clone());
    [Kind::Nextval, Kind::Currval, Kind::Setval, Kind::Lastval]
        .into_iter()
        .map(|kind| {
            AsyncScalarUDF::new(Arc::new(SequenceFunction {
                kind,
                signature: if kind == Kind::Lastval {
                    Signature::nullary(Volatility::Volatile)
                } else {
                    Signature::variadic_any(Volatility::Volatile)
                },
                core: core.clone(),
                values: values.clone(),
            }))
            .into_scalar_udf()
        })
        .chain([serial])
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Nextval,
    Currval,
    Setval,
    Lastval,
}

#[derive(Debug)]
struct SequenceFunction {
    kind: Kind,
    signature: Signature,
    core: Weak<Core>,
    values: Arc<SessionValues>,
}

impl PartialEq for SequenceFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.values, &other.values)
    }
}
impl Eq for SequenceFunction {}
impl std::hash::Hash for SequenceFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        std::ptr::hash(Arc::as_ptr(&self.values), state);
    }
}

impl ScalarUDFImpl for SequenceFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Nextval => "nextval",
            Kind::Currval => "currval",
            Kind::Setval => "setval",
            Kind::Lastval => "lastval",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Internal(
            "sequence functions are async".into(),
        ))
    }
}

fn df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl AsyncScalarUDFImpl for SequenceFunction {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let core = self
            .core
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the engine is gone".into()))?;
        let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(&args.args)?;
        let name_at = |i: usize| -> Option<String> {
            let a = arrays.first()?;
            let a = datafusion::arrow::compute::cast(a, &DataType::Utf8).ok()?;
            let s = a.as_string::<i32>();
            (!s.is_null(i)).then(|| by_oid(&core, bare(s.value(i))))
        };
        let int_at = |k: usize, i: usize| -> Option<i64> {
            let a = arrays.get(k)?;
            let a = datafusion::arrow::compute::cast(a, &DataType::Int64).ok()?;
            let a = a.as_primitive::<Int64Type>();
            (!a.is_null(i)).then(|| a.value(i))
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(match self.kind {
                Kind::Lastval => Some(self.values.last.lock().1.ok_or_else(|| {
                    df(Error::ObjectNotInPrerequisiteState(
                        "lastval is not yet defined in this session".into(),
                    ))
                })?),
                _ => {
                    let Some(name) = name_at(i) else {
                        out.push(None);
                        continue;
                    };
                    match self.kind {
                        Kind::Nextval => {
                            let v = core.nextvals(&name, 1).await.map_err(df)?;
                            self.values.note(&name, &v);
                            v.first().copied()
                        }
                        Kind::Currval => {
                            core.sequence(&name).await.map_err(df)?;
                            Some(self.values.last.lock().0.get(&name).copied().ok_or_else(
                                || {
                                    df(Error::ObjectNotInPrerequisiteState(format!(
                                        "currval of sequence \"{name}\" is not yet defined in this session"
                                    )))
                                },
                            )?)
                        }
                        _ => {
                            let Some(v) = int_at(1, i) else {
                                out.push(None);
                                continue;
                            };
                            let called = match arrays.get(2) {
                                Some(a) => {
                                    let a = datafusion::arrow::compute::cast(a, &DataType::Boolean)?;
                                    let a = a.as_boolean();
                                    a.is_null(i) || a.value(i)
                                }
                                None => true,
                            };
                            let v = core.setval(&name, v, called).await.map_err(df)?;
                            if called {
                                self.values.note(&name, &[v]);
                            }
                            Some(v)
                        }
                    }
                }
            });
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}

/// Postgres takes a sequence's options (`CREATE SEQUENCE`, an identity column's
/// parenthesised list) in any order; the SQL parser only in the order INCREMENT,
/// MINVALUE, MAXVALUE, START, CACHE, CYCLE (pg_dump writes START first). Each such list
/// is put in the parser's order; `None` when nothing needed it.
pub fn canonical_sequence_options(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !super::pgvector::mentions(sql, "sequence") && !super::pgvector::mentions(sql, "identity") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let word = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    let is = |i: usize, kw: &str| tokens.get(i).and_then(word).as_deref() == Some(kw);
    // The next token after `i` that is not whitespace.
    let next = |mut i: usize| {
        i += 1;
        while matches!(tokens.get(i), Some(Token::Whitespace(_))) {
            i += 1;
        }
        i
    };
    // Option lists, as ranges of token positions.
    let mut lists: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if is(i, "SEQUENCE")
            && (0..i)
                .rev()
                .find(|&j| !matches!(tokens[j], Token::Whitespace(_)))
                .is_some_and(|j| is(j, "CREATE") || is(j, "TEMP") || is(j, "TEMPORARY"))
        {
            // CREATE [TEMP] SEQUENCE [IF NOT EXISTS] name [AS type] options [OWNED BY ...]
            let mut j = next(i);
            if is(j, "IF") {
                j = next(next(next(j)));
            }
            j = next(j);
            while matches!(tokens.get(j), Some(Token::Period)) {
                j = next(next(j));
            }
            if is(j, "AS") {
                j = next(next(j));
            }
            let end = (j..tokens.len())
                .find(|&k| is(k, "OWNED") || matches!(tokens[k], Token::SemiColon))
                .unwrap_or(tokens.len());
            lists.push((j, end));
            i = end;
        } else if is(i, "IDENTITY") && matches!(tokens.get(next(i)), Some(Token::LParen)) {
            let start = next(i) + 1;
            let end = (start..tokens.len()).find(|&k| matches!(tokens[k], Token::RParen))?;
            lists.push((start, end));
            i = end;
        } else {
            i += 1;
        }
    }
    // An option's rank in the parser's order, where one starts at `k`.
    let rank = |k: usize| -> Option<u8> {
        match tokens.get(k).and_then(word)?.as_str() {
            "INCREMENT" => Some(0),
            "MINVALUE" => Some(1),
            "MAXVALUE" => Some(2),
            "START" => Some(3),
            "CACHE" => Some(4),
            "CYCLE" => Some(5),
            "NO" => match tokens.get(next(k)).and_then(word)?.as_str() {
                "MINVALUE" => Some(1),
                "MAXVALUE" => Some(2),
                "CYCLE" => Some(5),
                _ => None,
            },
            _ => None,
        }
    };
    let text = |range: std::ops::Range<usize>| -> String {
        tokens[range].iter().map(ToString::to_string).collect()
    };
    let mut out = String::new();
    let mut done = 0;
    let mut changed = false;
    for (start, end) in lists {
        // Split the list where options start (a `NO` starts its own; the keyword after
        // it does not).
        let mut options: Vec<(u8, usize, usize)> = Vec::new();
        let mut k = start;
        while k < end {
            let after_no = k > start && is(prev_word(&tokens, k), "NO");
            if let Some(r) = rank(k)
                && !after_no
            {
                if let Some(last) = options.last_mut() {
                    last.2 = k;
                }
                options.push((r, k, end));
            }
            k += 1;
        }
        if options.windows(2).all(|w| w[0].0 <= w[1].0) {
            continue;
        }
        let lead = options.first().map_or(end, |o| o.1);
        let mut sorted = options.clone();
        sorted.sort_by_key(|o| o.0);
        out.push_str(&text(done..lead));
        for (_, a, b) in sorted {
            let part = text(a..b);
            out.push_str(part.trim_end());
            out.push(' ');
        }
        done = end;
        changed = true;
    }
    if !changed {
        return None;
    }
    out.push_str(&text(done..tokens.len()));
    Some(out)
}

/// The position of the last word before `k` (skipping whitespace), or `k` itself.
fn prev_word(tokens: &[datafusion::sql::sqlparser::tokenizer::Token], k: usize) -> usize {
    (0..k)
        .rev()
        .find(|&j| {
            !matches!(
                tokens[j],
                datafusion::sql::sqlparser::tokenizer::Token::Whitespace(_)
            )
        })
        .unwrap_or(k)
}

/// Number the `nextval(s)` calls of a statement (`nextval(s, 1)`, `nextval(s, 2)`, ...:
/// the function ignores the number). Each call then takes its own value, as in Postgres,
/// where the query engine would otherwise compute two equal calls once.
pub fn number_nextvals(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, FunctionArguments, Value as SqlValue, VisitMut, VisitorMut,
    };
    struct Number(usize);
    impl VisitorMut for Number {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            if let SqlExpr::Function(f) = e
                && f.name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("nextval"))
                && let FunctionArguments::List(list) = &mut f.args
                && list.args.len() == 1
            {
                self.0 += 1;
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::value(
                        SqlValue::Number(self.0.to_string(), false),
                    ))));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Number(0));
}

/// `INSERT ... VALUES (nextval('s'), ...), ...`: the query engine cannot call an async
/// function inside VALUES, so each `nextval` of a sequence named by a literal takes its
/// value here, row by row and left to right as Postgres evaluates them, and becomes a
/// number. `None` when the VALUES list has no such call.
pub async fn take_nextvals_in_values(
    session: &super::Session,
    query: &datafusion::sql::sqlparser::ast::Query,
) -> Result<Option<datafusion::sql::sqlparser::ast::Query>> {
    use datafusion::sql::sqlparser::ast::{
        SetExpr, Value as SqlValue, Visit, VisitMut, Visitor, VisitorMut,
    };
    let SetExpr::Values(values) = query.body.as_ref() else {
        return Ok(None);
    };
    // The calls in evaluation order.
    struct Calls(Vec<String>);
    impl Visitor for Calls {
        type Break = ();
        fn post_visit_expr(&mut self, e: &SqlExpr) -> std::ops::ControlFlow<()> {
            if let Some(s) = nextval_of(e) {
                self.0.push(s);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(Vec::new());
    let _ = values.visit(&mut calls);
    if calls.0.is_empty() {
        return Ok(None);
    }
    let core = &session.engine.core;
    let mut taken = Vec::with_capacity(calls.0.len());
    for name in &calls.0 {
        let v = core.nextvals(name, 1).await?;
        session.sequence_values.note(name, &v);
        taken.extend(v);
    }
    struct Put(std::vec::IntoIter<i64>);
    impl VisitorMut for Put {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut SqlExpr) -> std::ops::ControlFlow<()> {
            if nextval_of(e).is_some()
                && let Some(v) = self.0.next()
            {
                *e = SqlExpr::value(SqlValue::Number(v.to_string(), false));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut query = query.clone();
    let _ = VisitMut::visit(query.body.as_mut(), &mut Put(taken.into_iter()));
    Ok(Some(query))
}

/// The option [`alter_sequence_statement`] carries an `ALTER SEQUENCE`'s action in.
pub const ALTER_SEQUENCE: &str = "vg_alter_sequence";

/// `ALTER SEQUENCE [IF EXISTS] name action`, which the SQL parser does not read, as
/// `ALTER TABLE [IF EXISTS] name SET (vg_alter_sequence = 'action')`, which
/// [`alter_sequence`] carries out. `None` for any other statement.
pub fn alter_sequence_statement(sql: &str) -> Option<String> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    let mut rest = strip_words(text, &["alter", "sequence"])?;
    let if_exists = match strip_words(rest, &["if", "exists"]) {
        Some(r) => {
            rest = r;
            "IF EXISTS "
        }
        None => "",
    };
    // The name: up to the first space outside double quotes.
    let mut quoted = false;
    let end = rest
        .char_indices()
        .find(|&(_, c)| {
            if c == '"' {
                quoted = !quoted;
            }
            c.is_whitespace() && !quoted
        })
        .map_or(rest.len(), |(i, _)| i);
    let (name, action) = rest.split_at(end);
    Some(format!(
        "ALTER TABLE {if_exists}{name} SET ({ALTER_SEQUENCE} = '{}')",
        action.trim().replace('\'', "''")
    ))
}

/// `text` without its leading `words` (case-insensitive, each followed by white
/// space), or `None` when it does not start with them.
fn strip_words<'a>(text: &'a str, words: &[&str]) -> Option<&'a str> {
    let mut rest = text.trim_start();
    for w in words {
        let head = rest.get(..w.len())?;
        if !head.eq_ignore_ascii_case(w) || !rest[w.len()..].starts_with(char::is_whitespace) {
            return None;
        }
        rest = rest[w.len()..].trim_start();
    }
    Some(rest)
}

/// Carry out `ALTER SEQUENCE name action`: `AS type`, `OWNED BY table.column | NONE`,
/// `RESTART [[WITH] n]` and `OWNER TO role` (vectorgate keeps no owners: a NOTICE says
/// so).
pub async fn alter_sequence(
    session: &super::Session,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
    if_exists: bool,
    action: &str,
) -> Result<super::Output> {
    let core = &session.engine.core;
    let key = super::statements::table_name(name)?;
    if !core.has_sequence(&key) {
        if if_exists {
            session
                .notices
                .push(format!("relation \"{key}\" does not exist, skipping"));
            return Ok(super::Output::Command("ALTER SEQUENCE".into()));
        }
        return Err(Error::UndefinedTable(key));
    }
    let words: Vec<&str> = action.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    match lower.as_slice() {
        ["owned", "by", "none"] => {
            let mut def = (*core.sequence(&key).await?).clone();
            def.owned_by = None;
            core.replace_sequence(def).await?;
        }
        ["owned", "by", _] => {
            let parts: Vec<String> = split_name(words[2]);
            let [.., t, c] = parts.as_slice() else {
                return Err(Error::Syntax("OWNED BY needs table.column or NONE".into()));
            };
            let table = match parts.len() {
                3 => crate::store::qualified(&parts[0], t),
                _ => t.clone(),
            };
            let owner = core.table(&table)?;
            let i = owner
                .column_index(c)
                .ok_or_else(|| Error::UndefinedColumnOf(c.clone(), owner.name.clone()))?;
            let mut def = (*core.sequence(&key).await?).clone();
            def.owned_by = Some((
                owner.stored_name().to_string(),
                owner.columns[i].stored_name().to_string(),
            ));
            core.replace_sequence(def).await?;
        }
        ["owner", "to", _] => session.notices.push(format!(
            "vectorgate keeps no owners: \"{key}\" is not given to {}",
            words[2]
        )),
        ["restart", rest @ ..] => {
            let def = core.sequence(&key).await?;
            let value = match rest {
                [] => def.start,
                ["with", n] | [n] => n
                    .parse::<i64>()
                    .map_err(|_| Error::Syntax(format!("RESTART WITH needs a number, not {n}")))?,
                _ => return Err(Error::Syntax(format!("ALTER SEQUENCE ... {action}"))),
            };
            core.setval(&key, value, false).await?;
        }
        ["as", _] => {
            // What Django sends after changing an AutoField's type.
            let ty = sequence_type_name(words[1])?;
            let def = core.sequence(&key).await?;
            let changed = retyped(&def, ty)?;
            if changed != *def {
                core.replace_sequence(changed).await?;
            }
        }
        _ => {
            return Err(Error::FeatureNotSupported(format!(
                "ALTER SEQUENCE ... {action} is not supported (AS, OWNED BY, RESTART and OWNER TO are)"
            )));
        }
    }
    Ok(super::Output::Command("ALTER SEQUENCE".into()))
}

/// `def` as `AS ty` makes it, as Postgres does: a bound that was the old type's own
/// becomes the new type's; one the new type cannot hold is 22023.
pub fn retyped(def: &SequenceDef, ty: ColumnType) -> Result<SequenceDef> {
    let ((old_min, old_max), (min, max)) = (type_bounds(&def.ty), type_bounds(&ty));
    let mut out = def.clone();
    // Postgres' own minimum for an ascending sequence is 1, its maximum for a
    // descending one -1: those stay.
    if def.max == old_max {
        out.max = max;
    }
    if def.min == old_min {
        out.min = min;
    }
    if out.max > max || out.min < min {
        return Err(Error::InvalidParameter(format!(
            "{} (\"{}\") is out of range for sequence data type {}",
            if out.max > max {
                "MAXVALUE"
            } else {
                "MINVALUE"
            },
            if out.max > max { out.max } else { out.min },
            ty.sql_name()
        )));
    }
    out.ty = ty;
    Ok(out)
}

/// The type `ALTER SEQUENCE ... AS type` names, as text.
fn sequence_type_name(t: &str) -> Result<ColumnType> {
    match t.to_ascii_lowercase().trim_matches('"') {
        "smallint" | "int2" => Ok(ColumnType::SmallInt),
        "integer" | "int" | "int4" => Ok(ColumnType::Int),
        "bigint" | "int8" => Ok(ColumnType::BigInt),
        _ => Err(Error::InvalidParameter(
            "sequence type must be smallint, integer, or bigint".into(),
        )),
    }
}

/// `a.b."C"` as its parts, case-folded where not quoted.
fn split_name(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut push = |part: &mut String, was_quoted: &mut bool| {
        let p = std::mem::take(part);
        parts.push(if *was_quoted {
            p
        } else {
            p.to_ascii_lowercase()
        });
        *was_quoted = false;
    };
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => push(&mut part, &mut was_quoted),
            c => part.push(c),
        }
    }
    push(&mut part, &mut was_quoted);
    parts
}

/// An identity's `SEQUENCE NAME name` option (pg_dump writes one in `ALTER COLUMN ...
/// ADD GENERATED ... AS IDENTITY (...)`), which the SQL parser does not read, taken out:
/// the sequence gets the name Postgres gives by default, `<table>_<column>_seq`, which
/// is the name pg_dump writes unless it was renamed. `None` when there is none.
pub fn without_identity_sequence_name(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !super::pgvector::mentions(sql, "sequence name") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let is = |i: usize, kw: &str| matches!(tokens.get(i), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw));
    let next = |mut i: usize| {
        i += 1;
        while matches!(tokens.get(i), Some(Token::Whitespace(_))) {
            i += 1;
        }
        i
    };
    let mut out = String::new();
    let mut i = 0;
    let mut changed = false;
    while i < tokens.len() {
        if is(i, "SEQUENCE") && is(next(i), "NAME") {
            // The name: words joined by periods.
            let mut j = next(next(i));
            while matches!(tokens.get(next(j)), Some(Token::Period)) {
                j = next(next(j));
            }
            i = j + 1;
            changed = true;
            continue;
        }
        out.push_str(&tokens[i].to_string());
        i += 1;
    }
    changed.then_some(out)
}

/// `nextval('name'::regclass)` as `nextval('name')`, on the SQL text: the parser's
/// compatibility rules turn a schema-qualified `'s.name'::regclass` into a catalog
/// subquery, which a column default (pg_dump's `SET DEFAULT nextval('public.t_id_seq'
/// ::regclass)`) must not keep. `None` when there is none.
pub fn nextval_regclass_literals(sql: &str) -> Option<String> {
    const CAST: &str = "'::regclass";
    if !super::pgvector::mentions(sql, "nextval(") || !super::pgvector::mentions(sql, CAST) {
        return None;
    }
    let lower = sql.to_ascii_lowercase();
    let mut out = String::with_capacity(sql.len());
    let mut done = 0;
    let mut from = 0;
    while let Some(at) = lower[from..].find("nextval('").map(|i| i + from) {
        let start = at + "nextval('".len();
        // The literal's closing quote (a doubled quote is part of it).
        let mut end = start;
        loop {
            match lower[end..].find('\'') {
                Some(i) if lower[end + i + 1..].starts_with('\'') => end += i + 2,
                Some(i) => {
                    end += i;
                    break;
                }
                None => return None,
            }
        }
        if lower[end..].starts_with(CAST) {
            out.push_str(&sql[done..=end]);
            done = end + CAST.len();
        }
        from = end + 1;
    }
    (done > 0).then(|| {
        out.push_str(&sql[done..]);
        out
    })
}
