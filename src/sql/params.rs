//! Parameters of the extended protocol: the type of each `$n` (for Describe), and
//! binding values into a statement. A bound value becomes a literal in the statement's
//! syntax tree (never spliced into text), and the statement then runs like a simple
//! query, so both protocols share one execution path.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    DataType as SqlDataType, Expr as SqlExpr, FunctionArg, FunctionArgExpr, SetExpr, Statement,
    TableFactor, TableObject, Value as SqlValue, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::Session;
use super::statements::{ident_name, show_name};
use crate::error::{Error, Result};
use crate::types::ColumnType;
use crate::types::{Value, format_vector};

/// What Describe reports for a statement.
#[derive(Debug, Clone)]
pub struct Described {
    /// The inferred type of `$1..$n` (a field, so that metadata such as "this is an
    /// oid" survives); `None` where nothing constrains it.
    pub params: Vec<Option<Field>>,
    /// Result columns, or `None` for a statement that returns no rows.
    pub schema: Option<SchemaRef>,
    /// The query's plan, made once here, when its executions can reuse it (see
    /// [`PreparedPlan`]).
    pub plan: Option<Arc<PreparedPlan>>,
}

/// A query planned once at Parse, with `$n` placeholders: each execution substitutes
/// the bound values as typed literals (`LogicalPlan::with_param_values`) instead of
/// writing them into the SQL and planning it again. Only for plans that read no
/// catalog table and call no table function (`vector_search` evaluates its arguments
/// while it is planned), whose parameter types are all known (from the plan, or from a
/// cast the placeholder is written in: SQLAlchemy's `$1::VARCHAR`, `LIMIT $2::INTEGER`),
/// and only while the catalog is the one it was planned against.
#[derive(Debug)]
pub struct PreparedPlan {
    pub plan: datafusion::logical_expr::LogicalPlan,
    /// The type of each `$n`, in order.
    pub types: Vec<DataType>,
    /// The catalog generation ([`crate::engine::Core::generation`]) it was made under.
    pub generation: u64,
    /// Whether its physical plan may serve the next execution with the same values
    /// ([`super::plan_cache`]): every function it calls is immutable (no clock, no
    /// setting, no random number folded into the plan when it is optimised).
    pub reusable: bool,
}

impl PreparedPlan {
    fn new(
        stmt: &Statement,
        plan: &datafusion::logical_expr::LogicalPlan,
        generation: u64,
        n: usize,
        described: &BTreeMap<usize, Field>,
    ) -> Option<PreparedPlan> {
        use datafusion::sql::sqlparser::ast::{TableFactor, Visit, Visitor};
        struct TableFunctions(bool);
        impl Visitor for TableFunctions {
            type Break = ();
            fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
                if matches!(
                    t,
                    TableFactor::Table { args: Some(_), .. }
                        | TableFactor::Function { .. }
                        | TableFactor::TableFunction { .. }
                        | TableFactor::UNNEST { .. }
                ) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        if !matches!(stmt, Statement::Query(_)) || n == 0 {
            return None;
        }
        let mut v = TableFunctions(false);
        let _ = stmt.visit(&mut v);
        if v.0 || super::catalog::reads_catalog(plan) {
            return None;
        }
        let found = plan.get_parameter_types().ok()?;
        // The plan leaves a placeholder untyped where only a cast says what it is; a
        // value of the cast's type then means what the general path's literal would.
        let types = (1..=n)
            .map(|i| {
                found
                    .get(&format!("${i}"))
                    .cloned()
                    .flatten()
                    .or_else(|| described.get(&i).map(|f| f.data_type().clone()))
            })
            .collect::<Option<Vec<DataType>>>()?;
        Some(PreparedPlan {
            plan: plan.clone(),
            types,
            generation,
            reusable: immutable(plan),
        })
    }

    /// The plan with `values` in place of its placeholders, or `None` when a value does
    /// not convert exactly to its placeholder's type (the general path decides then).
    pub fn bind(&self, values: &[Value]) -> Option<datafusion::logical_expr::LogicalPlan> {
        if values.len() < self.types.len() {
            return None;
        }
        let scalars = self
            .types
            .iter()
            .zip(values)
            .map(|(t, v)| scalar(v, t))
            .collect::<Option<Vec<_>>>()?;
        self.plan.clone().with_param_values(scalars).ok()
    }
}

/// Whether every function `plan` calls (in its subqueries too) answers from its
/// arguments alone.
fn immutable(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut pure = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|x| {
                let volatility = match x {
                    Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
                    Expr::AggregateFunction(f) => Some(f.func.signature().volatility),
                    Expr::WindowFunction(f) => Some(f.fun.signature().volatility),
                    _ => None,
                };
                pure &= volatility.is_none_or(|v| v == Volatility::Immutable);
                Ok(if pure {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    });
    pure
}

/// A bound value as a literal of type `ty`, when it converts exactly.
pub(crate) fn scalar(v: &Value, ty: &DataType) -> Option<datafusion::common::ScalarValue> {
    use datafusion::common::ScalarValue as S;
    Some(match (v, ty) {
        (Value::Null, t) => S::try_from(t).ok()?,
        (Value::Bool(b), DataType::Boolean) => S::Boolean(Some(*b)),
        (Value::Int(i), DataType::Int16) => S::Int16(Some(i16::try_from(*i).ok()?)),
        (Value::Int(i), DataType::Int32) => S::Int32(Some(i32::try_from(*i).ok()?)),
        (Value::Int(i), DataType::Int64) => S::Int64(Some(*i)),
        (Value::Float(f), DataType::Float64) => S::Float64(Some(*f)),
        (Value::Float(f), DataType::Float32) => S::Float32(Some(*f as f32)),
        (Value::Text(s), DataType::Utf8) => S::Utf8(Some(s.clone())),
        (Value::Uuid(u), DataType::Utf8) => S::Utf8(Some(u.to_string())),
        (Value::Text(s), DataType::Utf8View) => S::Utf8View(Some(s.clone())),
        (Value::Text(s), DataType::LargeUtf8) => S::LargeUtf8(Some(s.clone())),
        _ => return None,
    })
}

pub(crate) fn placeholder_index(e: &SqlExpr) -> Option<usize> {
    if let SqlExpr::Value(v) = e
        && let SqlValue::Placeholder(p) = &v.value
    {
        return p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1);
    }
    None
}

pub(crate) fn count_params(stmt: &Statement) -> usize {
    // The `$n` of a statement PREPARE names are its own, bound at each EXECUTE.
    if matches!(stmt, Statement::Prepare { .. }) {
        return 0;
    }
    let mut max = 0;
    let _ = visit_expressions(stmt, |e| {
        if let Some(i) = placeholder_index(e) {
            max = max.max(i);
        }
        ControlFlow::<()>::Continue(())
    });
    max
}

/// The Arrow type of a SQL type name a parameter is cast to, for the common scalars and
/// their arrays (what drivers write: `$1::int`, `$1::text[]`, `$1::oid[]`).
fn cast_type(t: &datafusion::sql::sqlparser::ast::DataType) -> Option<DataType> {
    use datafusion::sql::sqlparser::ast::DataType as T;
    Some(match t {
        T::SmallInt(_) | T::Int2(_) => DataType::Int16,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int32,
        T::BigInt(_) | T::Int8(_) => DataType::Int64,
        T::Real | T::Float4 => DataType::Float32,
        T::Double(_) | T::DoublePrecision | T::Float8 => DataType::Float64,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Text | T::Varchar(_) | T::CharacterVarying(_) | T::String(_) => DataType::Utf8,
        T::Bytea => DataType::Binary,
        T::Date => DataType::Date32,
        _ => return None,
    })
}

/// The field a parameter cast to `t` is described as: `cast_type`, plus `oid` (an Int32
/// marked the way arrow-pg reports oids) and arrays of either.
fn cast_field(t: &datafusion::sql::sqlparser::ast::DataType, name: String) -> Option<Field> {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType as T};
    match t {
        T::Custom(n, _) if n.to_string().eq_ignore_ascii_case("oid") => Some(
            Field::new(name, DataType::Int32, true).with_metadata(
                [(
                    arrow_pg::datatypes::PG_OID_ALIAS_KEY.to_string(),
                    "oid".to_string(),
                )]
                .into(),
            ),
        ),
        T::Array(ArrayElemTypeDef::SquareBracket(inner, _))
        | T::Array(ArrayElemTypeDef::AngleBracket(inner)) => {
            let element = cast_field(inner, "item".into())?;
            Some(Field::new(name, DataType::List(Arc::new(element)), true))
        }
        other => Some(Field::new(name, cast_type(other)?, true)),
    }
}

/// Types of placeholders cast explicitly (`$1::int`): the cast says what the client
/// should send, as in Postgres.
fn cast_params(stmt: &Statement, types: &mut BTreeMap<usize, Field>) {
    let _ = visit_expressions(stmt, |e| {
        if let SqlExpr::Cast {
            expr, data_type, ..
        } = e
            && let Some(i) = placeholder_index(expr)
            && let Some(f) = cast_field(data_type, format!("${i}"))
        {
            types.entry(i).or_insert(f);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The field of a parameter that pgvector would type `vector`: an operand of `<->`,
/// `<=>`, `<#>` or of a distance function. Clients that registered pgvector's type
/// (pgvector-python on asyncpg or psycopg, pgvector-node, pgvector-java) then send it in
/// pgvector's own binary or text form.
pub fn pgvector_param(i: usize, kind: ColumnType) -> Field {
    kind.arrow_field(&format!("${i}"), true)
}

/// Placeholders written as operands of pgvector's operators or distance functions in
/// `sql` (read before the operators become `vector_search` or function calls), each
/// with the type pgvector would give it: `vector`, unless cast to another of its types
/// or compared with a column of one (`column_type` says which a column name has in the
/// tables the statement reads, as written: before a search replaces its table).
pub fn pgvector_operands(
    sql: &str,
    column_type: &dyn Fn(&[String], &str) -> Option<ColumnType>,
    mentions_vector_column: &dyn Fn(&str) -> bool,
) -> Vec<(usize, ColumnType)> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains('$')
        || !["<->", "<=>", "<#>", "distance", "inner_product", "vec"]
            .iter()
            .any(|m| lower.contains(m))
            && !mentions_vector_column(&lower)
    {
        return Vec::new();
    }
    let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Vec::new();
    };
    // `$1::vector` is a vector too (`$1::halfvec` a halfvec, ...); another cast
    // (`$1::real[]`) says what the client sends. The type is None when not cast.
    fn operand(e: &SqlExpr) -> Option<(usize, Option<ColumnType>)> {
        match e {
            SqlExpr::Nested(expr) => operand(expr),
            SqlExpr::Cast {
                expr,
                data_type: datafusion::sql::sqlparser::ast::DataType::Custom(name, _),
                ..
            } => {
                let kind = match name.to_string().to_ascii_lowercase().as_str() {
                    "vector" => ColumnType::Vector(0),
                    "halfvec" => ColumnType::HalfVec(0),
                    "sparsevec" => ColumnType::SparseVec(0),
                    _ => return None,
                };
                operand(expr).map(|(i, _)| (i, Some(kind)))
            }
            other => placeholder_index(other).map(|i| (i, None)),
        }
    }
    let mut found = Vec::new();
    for stmt in &stmts {
        let tables = super::pgvector::relations(stmt);
        // Not cast: the type of the column on the other side, else a vector.
        let column = |e: &SqlExpr| match e {
            SqlExpr::Identifier(id) => column_type(&tables, &id.value),
            SqlExpr::CompoundIdentifier(ids) => {
                ids.last().and_then(|id| column_type(&tables, &id.value))
            }
            _ => None,
        };
        let pair = |a: &SqlExpr, b: &SqlExpr| {
            operand(a).map(|(i, kind)| {
                (
                    i,
                    kind.or_else(|| column(b)).unwrap_or(ColumnType::Vector(0)),
                )
            })
        };
        // A placeholder beside a vector column under `+ - * ||` or a comparison has
        // the column's type, as Postgres infers it from the operator's other operand.
        let beside = |a: &SqlExpr, b: &SqlExpr| match operand(a) {
            Some((i, None)) => column(b).map(|kind| (i, kind)),
            _ => None,
        };
        let _ = visit_expressions(stmt, |e| {
            match e {
                // `$1::vector` is a vector wherever it is written.
                SqlExpr::Cast { .. } => {
                    if let Some((i, Some(kind))) = operand(e) {
                        found.push((i, kind));
                    }
                }
                SqlExpr::BinaryOp { left, op, right }
                    if {
                        use datafusion::sql::sqlparser::ast::BinaryOperator as B;
                        matches!(
                            op,
                            B::Plus
                                | B::Minus
                                | B::Multiply
                                | B::StringConcat
                                | B::Eq
                                | B::NotEq
                                | B::Lt
                                | B::LtEq
                                | B::Gt
                                | B::GtEq
                        )
                    } =>
                {
                    found.extend(beside(left, right));
                    found.extend(beside(right, left));
                }
                SqlExpr::BinaryOp { left, op, right }
                    if matches!(
                        op,
                        datafusion::sql::sqlparser::ast::BinaryOperator::LtDashGt
                            | datafusion::sql::sqlparser::ast::BinaryOperator::Spaceship
                    ) || matches!(op, datafusion::sql::sqlparser::ast::BinaryOperator::Custom(s) if s == "<#>") =>
                {
                    found.extend(pair(left, right));
                    found.extend(pair(right, left));
                }
                SqlExpr::Function(f)
                    if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                        matches!(
                            i.value.to_ascii_lowercase().as_str(),
                            "l2_distance"
                                | "cosine_distance"
                                | "inner_product"
                                | "negative_inner_product"
                        )
                    }) =>
                {
                    if let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &f.args
                    {
                        let args: Vec<&SqlExpr> = list
                            .args
                            .iter()
                            .filter_map(|a| match a {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x),
                                _ => None,
                            })
                            .collect();
                        if let [a, b] = args.as_slice() {
                            found.extend(pair(a, b));
                            found.extend(pair(b, a));
                        }
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
    }
    found
}

fn vector_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
}

/// The scalar subqueries among `vector_search` arguments (`(SELECT embedding FROM t
/// WHERE id = $1)`, also under a cast).
fn vector_search_subqueries(stmt: &Statement) -> Vec<datafusion::sql::sqlparser::ast::Query> {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    struct Found(Vec<datafusion::sql::sqlparser::ast::Query>);
    impl Visitor for Found {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &TableFactor) -> std::ops::ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = f
                && name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("vector_search"))
            {
                for a in &args.args {
                    let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = a else {
                        continue;
                    };
                    let mut e: &SqlExpr = e;
                    while let SqlExpr::Cast { expr, .. } | SqlExpr::Nested(expr) = e {
                        e = expr;
                    }
                    if let SqlExpr::Subquery(q) = e {
                        self.0.push(q.as_ref().clone());
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut found = Found(Vec::new());
    let _ = stmt.visit(&mut found);
    found.0
}

/// The arguments of a call of `vector_search` in FROM.
pub(crate) fn vector_search_args(f: &TableFactor) -> Option<&[FunctionArg]> {
    match f {
        TableFactor::Table {
            name,
            args: Some(args),
            ..
        } if name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("vector_search")) =>
        {
            Some(&args.args)
        }
        _ => None,
    }
}

/// Types of placeholders used directly as `vector_search` arguments.
fn vector_search_params(stmt: &Statement, types: &mut BTreeMap<usize, Field>) {
    // Table functions appear as table factors with arguments; walk the text-free way.
    fn walk_factor(f: &TableFactor, types: &mut BTreeMap<usize, Field>) {
        if let Some(args) = vector_search_args(f) {
            // (table, vector, k) or (table, column, vector, k).
            let named = args.len() == 4;
            for (pos, a) in args.iter().enumerate() {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = a
                    && let Some(i) = placeholder_index(e)
                {
                    let t = match (pos, named) {
                        (0, _) | (1, true) => DataType::Utf8,
                        (1, false) | (2, true) => vector_type(),
                        _ => DataType::Int64,
                    };
                    types.insert(i, Field::new(format!("${i}"), t, true));
                }
            }
            return;
        }
        match f {
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                walk_factor(&table_with_joins.relation, types);
                for j in &table_with_joins.joins {
                    walk_factor(&j.relation, types);
                }
            }
            TableFactor::Derived { subquery, .. } => walk_query(subquery, types),
            _ => {}
        }
    }
    fn walk_set(s: &SetExpr, types: &mut BTreeMap<usize, Field>) {
        match s {
            SetExpr::Select(sel) => {
                for t in &sel.from {
                    walk_factor(&t.relation, types);
                    for j in &t.joins {
                        walk_factor(&j.relation, types);
                    }
                }
            }
            SetExpr::Query(q) => walk_query(q, types),
            SetExpr::SetOperation { left, right, .. } => {
                walk_set(left, types);
                walk_set(right, types);
            }
            _ => {}
        }
    }
    fn walk_query(q: &datafusion::sql::sqlparser::ast::Query, types: &mut BTreeMap<usize, Field>) {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                walk_query(&cte.query, types);
            }
        }
        walk_set(&q.body, types);
    }
    match stmt {
        Statement::Query(q) => walk_query(q, types),
        Statement::Explain { statement, .. } => vector_search_params(statement, types),
        _ => {}
    }
}

/// The table a write names (42P01 if there is none); `None` for a name that is not a
/// plain identifier.
fn written_table(
    session: &Session,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
) -> Result<Option<Arc<crate::store::TableDef>>> {
    match super::statements::table_name(name) {
        Ok(t) => session.engine.core.table(&t).map(Some),
        Err(_) => Ok(None),
    }
}

pub async fn describe(session: &Session, stmt: &Statement) -> Result<Described> {
    let n = count_params(stmt);
    let mut types: BTreeMap<usize, Field> = BTreeMap::new();
    let mut schema = None;
    let mut prepared = None;
    // Read before planning: a change to the catalog meanwhile makes the plan stale.
    let generation = session.engine.core.generation();
    match stmt {
        Statement::Query(q) if super::writable_cte::modifies(q) => {
            let stand_in = super::writable_cte::stand_in(q).ok_or_else(|| {
                Error::FeatureNotSupported(
                    "this data-modifying WITH cannot be prepared; send it as a simple query".into(),
                )
            })?;
            let plan = session.plan(Statement::Query(Box::new(stand_in))).await?;
            merge_plan_params(&plan, &mut types);
            schema = Some(super::catalog::result_schema(&plan));
        }
        Statement::Query(q) if super::apply::is_marked(q) => {
            let (result, plan) = super::apply::schema(session, q).await?;
            merge_plan_params(&plan, &mut types);
            schema = Some(result);
        }
        Statement::Query(_) | Statement::Explain { .. } => {
            vector_search_params(stmt, &mut types);
            cast_params(stmt, &mut types);
            let plan = session.plan(stmt.clone()).await?;
            merge_plan_params(&plan, &mut types);
            // A subquery giving `vector_search` its vector runs while the search is
            // planned, so its parameters are not in the plan: plan it on its own.
            for q in vector_search_subqueries(stmt) {
                if let Ok(sub) = session.plan(Statement::Query(Box::new(q))).await {
                    merge_plan_params(&sub, &mut types);
                }
            }
            schema = Some(super::catalog::result_schema(&plan));
            prepared = PreparedPlan::new(stmt, &plan, generation, n, &types).map(Arc::new);
        }
        Statement::ShowVariable { variable } if show_name(variable) == "vectorgate.sync_status" => {
            schema = Some(super::statements::sync_status_schema());
        }
        // The statement it runs, described; never a plan of it kept for executions (the
        // name may be prepared again, with another statement, in between).
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            ..
        } => {
            let bound = super::prepare::bound(session, name, parameters)?;
            let inner = Box::pin(describe(session, &bound)).await?;
            return Ok(Described {
                params: (1..=n)
                    .map(|i| inner.params.get(i - 1).cloned().flatten())
                    .collect(),
                schema: inner.schema,
                plan: None,
            });
        }
        Statement::ShowVariable { variable } => {
            let name = show_name(variable);
            schema = Some(Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                Field::new(name, DataType::Utf8, false),
            ])));
        }
        Statement::Insert(ins) => {
            // As Postgres, a write to a table that does not exist fails at Parse.
            if let TableObject::TableName(name) = &ins.table
                && let Some(def) = written_table(session, name)?
            {
                let targets: Vec<Option<usize>> = if ins.columns.is_empty() {
                    def.visible().into_iter().map(Some).collect()
                } else {
                    ins.columns
                        .iter()
                        .map(|c| {
                            c.0.last()
                                .and_then(|p| p.as_ident())
                                .map(ident_name)
                                .and_then(|n| def.column_index(&n))
                        })
                        .collect()
                };
                if let Some(src) = &ins.source
                    && let SetExpr::Values(values) = src.body.as_ref()
                {
                    for row in &values.rows {
                        for (e, t) in row.iter().zip(&targets) {
                            if let (Some(i), Some(c)) = (placeholder_index(e), t) {
                                types.entry(i).or_insert_with(|| {
                                    def.columns[*c].ty.arrow_field(&format!("${i}"), true)
                                });
                            }
                        }
                    }
                }
            }
        }
        Statement::Update(up) => {
            if let TableFactor::Table { name, .. } = &up.table.relation
                && let Some(def) = written_table(session, name)?
            {
                for a in &up.assignments {
                    let target = a.target.to_string().to_ascii_lowercase();
                    if let (Some(i), Some(c)) = (
                        placeholder_index(&a.value),
                        def.column_index(target.trim_matches('"')),
                    ) {
                        types.entry(i).or_insert_with(|| {
                            def.columns[c].ty.arrow_field(&format!("${i}"), true)
                        });
                    }
                }
                if let Some(sel) = &up.selection {
                    infer_where(session, &def.sql_name(), sel, &mut types).await;
                }
            }
        }
        Statement::Delete(del) => {
            if let datafusion::sql::sqlparser::ast::FromTable::WithFromKeyword(t)
            | datafusion::sql::sqlparser::ast::FromTable::WithoutKeyword(t) = &del.from
                && let Some(twj) = t.first()
                && let TableFactor::Table { name, .. } = &twj.relation
                && let Some(sel) = &del.selection
            {
                infer_where(session, &name.to_string(), sel, &mut types).await;
            }
        }
        _ => {}
    }
    // A write with RETURNING describes its rows: the same query over the table itself.
    if let Some((def, alias, items)) = super::statements::returning_of(session, stmt) {
        let from = def.sql_name();
        let sql = super::statements::returning_sql(&def, alias.as_deref(), items, &from);
        if let Some(q) = session.engine.parse(&sql)?.pop() {
            let plan = session.plan(q).await?;
            schema = Some(super::catalog::result_schema(&plan));
        }
    }
    Ok(Described {
        params: (1..=n).map(|i| types.get(&i).cloned()).collect(),
        schema,
        plan: prepared,
    })
}

/// `table` as SQL names it ([`crate::store::TableDef::sql_name`]).
async fn infer_where(
    session: &Session,
    table: &str,
    sel: &SqlExpr,
    types: &mut BTreeMap<usize, Field>,
) {
    let sql = format!("SELECT 1 FROM {table} WHERE {sel}");
    let Ok(mut stmts) = session.engine.parse(&sql) else {
        return;
    };
    let Some(stmt) = stmts.pop() else { return };
    if let Ok(plan) = session.plan(stmt).await {
        merge_plan_params(&plan, types);
    }
}

fn merge_plan_params(
    plan: &datafusion::logical_expr::LogicalPlan,
    types: &mut BTreeMap<usize, Field>,
) {
    if let Ok(fields) = plan.get_parameter_fields() {
        for (name, f) in fields {
            if let (Some(i), Some(f)) = (
                name.strip_prefix('$').and_then(|x| x.parse::<usize>().ok()),
                f,
            ) {
                types.entry(i).or_insert_with(|| f.as_ref().clone());
            }
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL literal for a bound value.
pub(crate) fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => {
            if *b {
                "TRUE".into()
            } else {
                "FALSE".into()
            }
        }
        Value::Int(i) => {
            if *i < 0 {
                format!("({i})")
            } else {
                i.to_string()
            }
        }
        Value::Float(f) if f.is_finite() => {
            let s = format!("{f:?}");
            if *f < 0.0 { format!("({s})") } else { s }
        }
        Value::Float(f) => format!(
            "CAST('{}' AS DOUBLE PRECISION)",
            if f.is_nan() {
                "NaN".to_string()
            } else if *f > 0.0 {
                "Infinity".into()
            } else {
                "-Infinity".into()
            }
        ),
        Value::Text(s) => quote(s),
        Value::Uuid(u) => quote(&u.to_string()),
        Value::Timestamp(t) => {
            let dt = chrono::DateTime::from_timestamp_micros(*t).unwrap_or_default();
            format!(
                "CAST('{}' AS TIMESTAMP)",
                dt.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f")
            )
        }
        Value::Date(d) => {
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
                + chrono::Duration::days(*d as i64);
            format!("CAST('{date}' AS DATE)")
        }
        Value::TextArray(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| match x {
                    None => "NULL".into(),
                    Some(s) => quote(s),
                })
                .collect();
            format!("ARRAY[{}]", items.join(", "))
        }
        Value::IntArray(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| x.map(|i| i.to_string()).unwrap_or_else(|| "NULL".into()))
                .collect();
            format!("ARRAY[{}]", items.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(literal).collect();
            format!("ARRAY[{}]", items.join(", "))
        }
        Value::Vector(v) => quote(&format_vector(v)),
        Value::Bytes(b) => quote(&crate::types::format_bytea(b)),
        Value::Decimal(u, s) => crate::types::format_decimal(*u, *s),
    }
}

/// Replace `$n` with the literal of `values[n-1]`.
pub fn bind(stmt: &Statement, values: &[Value]) -> Result<Statement> {
    if matches!(stmt, Statement::Prepare { .. }) {
        // Its `$n` are bound by EXECUTE.
        return Ok(stmt.clone());
    }
    let needed = count_params(stmt);
    if values.len() < needed {
        return Err(Error::ProtocolViolation(format!(
            "bind message supplies {} parameters, but prepared statement requires {needed}",
            values.len()
        )));
    }
    let dialect = PostgreSqlDialect {};
    let mut literals = Vec::with_capacity(values.len());
    for v in values {
        let text = literal(v);
        let mut expr = Parser::new(&dialect)
            .try_with_sql(&text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| Error::internal(format!("literal {text}: {e}")))?;
        super::literals::printable(&mut expr);
        literals.push(expr);
    }
    let mut stmt = stmt.clone();
    // `$1::bool[]` bound to `{t,f}` text: `ARRAY[TRUE, FALSE]` (the text does not cast).
    let _ = visit_expressions_mut(&mut stmt, |e| {
        if let SqlExpr::Cast {
            expr,
            data_type: SqlDataType::Array(elem),
            ..
        } = e
            && matches!(
                elem,
                datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _)
                    if matches!(**t, SqlDataType::Bool | SqlDataType::Boolean)
            )
            && let Some(i) = placeholder_index(expr)
            && let Some(Value::Text(t)) = values.get(i - 1)
            && let Ok(items) = crate::types::parse_pg_array(t)
        {
            let items: Vec<SqlExpr> = items
                .iter()
                .map(|x| {
                    SqlExpr::value(match x.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        None => SqlValue::Null,
                        Some("t" | "true") => SqlValue::Boolean(true),
                        Some(_) => SqlValue::Boolean(false),
                    })
                })
                .collect();
            **expr = SqlExpr::Array(datafusion::sql::sqlparser::ast::Array {
                elem: items,
                named: true,
            });
        }
        ControlFlow::<()>::Continue(())
    });
    // `$1::real[]` bound to an array of floats: `ARRAY[...]`, which casts to any numeric
    // array type (the '[...]' text literal does not).
    let _ = visit_expressions_mut(&mut stmt, |e| {
        if let SqlExpr::Cast {
            expr,
            data_type: SqlDataType::Array(_),
            ..
        } = e
            && let Some(i) = placeholder_index(expr)
            && let Some(Value::Vector(v)) = values.get(i - 1)
        {
            let items: Vec<SqlExpr> = v
                .iter()
                .map(|x| SqlExpr::value(SqlValue::Number(x.to_string(), false)))
                .collect();
            **expr = SqlExpr::Array(datafusion::sql::sqlparser::ast::Array {
                elem: items,
                named: true,
            });
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(&mut stmt, |e| {
        if let Some(i) = placeholder_index(e) {
            *e = literals[i - 1].clone();
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .pop()
            .expect("one statement")
    }

    #[test]
    fn binds_literals_into_the_tree() {
        let s =
            parse("SELECT * FROM vector_search('docs', $1, $2) WHERE category = $3 AND year > $4");
        assert_eq!(count_params(&s), 4);
        let b = bind(
            &s,
            &[
                Value::Vector(vec![0.5, -1.0]),
                Value::Int(10),
                Value::Text("it's".into()),
                Value::Int(-3),
            ],
        )
        .expect("bind");
        assert_eq!(
            b.to_string(),
            "SELECT * FROM vector_search('docs', '[0.5,-1]', 10) WHERE category = 'it''s' AND year > (-3)"
        );
        let mut types = BTreeMap::new();
        vector_search_params(&s, &mut types);
        assert_eq!(
            types.get(&1).map(|f| f.data_type().clone()),
            Some(vector_type())
        );
        assert_eq!(
            types.get(&2).map(|f| f.data_type().clone()),
            Some(DataType::Int64)
        );
        assert!(bind(&s, &[Value::Int(1)]).is_err());
        // The four-argument form names the column second.
        let s = parse("SELECT * FROM vector_search('docs', $1, $2, $3)");
        let mut types = BTreeMap::new();
        vector_search_params(&s, &mut types);
        let got: Vec<DataType> = (1..=3)
            .filter_map(|i| types.get(&i).map(|f| f.data_type().clone()))
            .collect();
        assert_eq!(got, vec![DataType::Utf8, vector_type(), DataType::Int64]);
    }
}
