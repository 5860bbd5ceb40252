//! SQL Postgres accepts that DataFusion reads otherwise, rewritten before planning:
//! functions in FROM, and the user special registers.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArguments, Ident, ObjectName, Statement, visit_expressions_mut,
};

use super::statements::ident_name;

/// Functions in FROM as Postgres sees them: a single-column set-returning function
/// (`generate_series`, `unnest` of one array) names its column after its alias, or after
/// itself; any other function is a one-row table of its value (`string_to_array(..) s`,
/// as Grafana reads the search path). `is_scalar` tells a scalar function's name.
pub fn from_functions(stmt: &mut Statement, is_scalar: &dyn Fn(&str) -> bool) {
    use datafusion::sql::sqlparser::ast::{
        FunctionArgumentList, TableAlias, TableAliasColumnDef, TableFactor,
        VisitMut, VisitorMut,
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
