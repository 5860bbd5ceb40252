//! The hidden key of tables created without a primary key ([`crate::store::ROW_ID`]): `*` and `t.*`
//! over such a table become its other columns, named one by one, so the key stays out
//! of results as Postgres' system columns do (`SELECT ctid` still reads it).

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FromTable, FunctionArg, FunctionArgExpr, Ident, ObjectName, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, Statement, TableFactor, TableObject,
    TableWithJoins, Value, VisitMut, VisitorMut, WildcardAdditionalOptions,
};

use super::statements::{ident_name, table_name};
use crate::engine::Core;
use crate::store::TableDef;

/// Rewrite the wildcards of `stmt` that cover a table with a hidden key. Statements
/// over none of them are left as they are.
pub fn hide(core: &Core, stmt: &mut Statement) {
    let mut ctes = HashSet::new();
    let _ = stmt.visit(&mut Ctes(&mut ctes));
    let _ = stmt.visit(&mut Hide { core, ctes });
}

/// The names of a statement's common table expressions: they hide tables of the same
/// name.
struct Ctes<'a>(&'a mut HashSet<String>);

impl VisitorMut for Ctes<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.0.insert(ident_name(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

struct Hide<'a> {
    core: &'a Core,
    ctes: HashSet<String>,
}

/// A relation in a FROM clause: the name its columns are qualified by, and, for a table
/// with a hidden key, the columns `*` stands for.
struct Scoped {
    qualifier: Option<Vec<Ident>>,
    columns: Option<Vec<String>>,
}

impl Hide<'_> {
    /// The table `name` refers to, unless a CTE of that name hides it.
    fn table(&self, name: &ObjectName) -> Option<std::sync::Arc<TableDef>> {
        if name.0.len() == 1
            && let Some(id) = name.0[0].as_ident()
            && self.ctes.contains(&ident_name(id))
        {
            return None;
        }
        self.core.table(&table_name(name).ok()?).ok()
    }

    fn scoped(&self, factor: &TableFactor, out: &mut Vec<Scoped>) {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let written: Vec<Ident> = name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().cloned())
                    .collect();
                // A table function without an alias qualifies its columns by nothing.
                let qualifier = match (alias, args) {
                    (Some(a), _) => Some(vec![a.name.clone()]),
                    (None, None) => Some(written),
                    (None, Some(_)) => None,
                };
                let columns = match args {
                    None => self
                        .table(name)
                        .filter(|def| def.has_hidden_column())
                        .map(|def| visible_names(&def)),
                    // `vector_search('t', ...)`: the table's columns, then `distance`.
                    Some(args) if is_vector_search(name) => searched_table(&args.args)
                        .and_then(|t| self.table(&t))
                        .filter(|def| def.has_hidden_column())
                        .map(|def| {
                            let mut cols = visible_names(&def);
                            cols.push(super::vector_search::DISTANCE.into());
                            cols
                        }),
                    Some(_) => None,
                };
                out.push(Scoped { qualifier, columns });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.scope_of(std::slice::from_ref(table_with_joins), out),
            other => out.push(Scoped {
                qualifier: alias_of(other).map(|a| vec![a]),
                columns: None,
            }),
        }
    }

    fn scope_of(&self, from: &[TableWithJoins], out: &mut Vec<Scoped>) {
        for t in from {
            self.scoped(&t.relation, out);
            for j in &t.joins {
                self.scoped(&j.relation, out);
            }
        }
    }
}

/// A table's columns but the hidden key.
fn visible_names(def: &TableDef) -> Vec<String> {
    def.visible()
        .into_iter()
        .map(|c| def.columns[c].name.clone())
        .collect()
}

fn is_vector_search(name: &ObjectName) -> bool {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("vector_search"))
}

/// The table a `vector_search` call names in its first argument.
fn searched_table(args: &[FunctionArg]) -> Option<ObjectName> {
    let FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v))) = args.first()? else {
        return None;
    };
    let Value::SingleQuotedString(s) = &v.value else {
        return None;
    };
    let parts: Vec<Ident> = s.split('.').map(Ident::new).collect();
    Some(ObjectName::from(parts))
}

fn alias_of(factor: &TableFactor) -> Option<Ident> {
    match factor {
        TableFactor::Derived { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::NestedJoin { alias, .. } => alias.as_ref().map(|a| a.name.clone()),
        _ => None,
    }
}

fn plain(opts: &WildcardAdditionalOptions) -> bool {
    opts.opt_exclude.is_none()
        && opts.opt_except.is_none()
        && opts.opt_replace.is_none()
        && opts.opt_rename.is_none()
        && opts.opt_ilike.is_none()
}

/// `q.c` (or `c` without a qualifier) for each of `columns`.
fn named(qualifier: Option<&[Ident]>, columns: &[String]) -> Vec<SelectItem> {
    columns
        .iter()
        .map(|c| {
            let column = Ident::with_quote('"', c);
            SelectItem::UnnamedExpr(match qualifier {
                Some(q) => {
                    let mut parts = q.to_vec();
                    parts.push(column);
                    SqlExpr::CompoundIdentifier(parts)
                }
                None => SqlExpr::Identifier(column),
            })
        })
        .collect()
}

/// Replace the wildcards of `items` that cover a hidden key by the columns they stand
/// for. A `*` over several relations becomes `q.*` (or the named columns) for each in
/// turn; where one of them has no name to qualify by, the `*` is left alone.
fn expand(items: &mut Vec<SelectItem>, scope: &[Scoped]) {
    let mut out = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        match item {
            SelectItem::Wildcard(opts) if plain(&opts) => {
                let mut parts = Vec::new();
                for s in scope {
                    match (&s.qualifier, &s.columns) {
                        (q, Some(cols)) if q.is_some() || scope.len() == 1 => {
                            parts.extend(named(q.as_deref(), cols))
                        }
                        (Some(q), None) => parts.push(SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(ObjectName::from(
                                q.clone(),
                            )),
                            WildcardAdditionalOptions::default(),
                        )),
                        (None, _) | (_, Some(_)) => {
                            parts.clear();
                            break;
                        }
                    }
                }
                if parts.is_empty() {
                    out.push(SelectItem::Wildcard(opts));
                } else {
                    out.extend(parts);
                }
            }
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                opts,
            ) if plain(&opts) => {
                let last = name.0.last().and_then(|p| p.as_ident()).map(ident_name);
                let hit = scope.iter().find(|s| {
                    s.columns.is_some()
                        && s.qualifier.as_ref().and_then(|q| q.last()).map(ident_name) == last
                });
                match hit {
                    Some(Scoped {
                        qualifier: Some(q),
                        columns: Some(cols),
                    }) => out.extend(named(Some(q), cols)),
                    _ => out.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        opts,
                    )),
                }
            }
            other => out.push(other),
        }
    }
    *items = out;
}

impl VisitorMut for Hide<'_> {
    type Break = ();

    fn pre_visit_select(&mut self, sel: &mut Select) -> ControlFlow<()> {
        let mut scope = Vec::new();
        self.scope_of(&sel.from, &mut scope);
        // Only a scope with a table with a hidden key changes its wildcards.
        if scope.iter().any(|s| s.columns.is_some()) {
            expand(&mut sel.projection, &scope);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, stmt: &mut Statement) -> ControlFlow<()> {
        // RETURNING * of a write to a table with a hidden key.
        let (name, alias, returning) = match stmt {
            Statement::Insert(ins) => match &ins.table {
                TableObject::TableName(n) => (
                    n.clone(),
                    ins.table_alias.as_ref().map(|a| a.alias.clone()),
                    &mut ins.returning,
                ),
                _ => return ControlFlow::Continue(()),
            },
            Statement::Update(up) if up.from.is_none() => match &up.table.relation {
                TableFactor::Table { name, alias, .. } => (
                    name.clone(),
                    alias.as_ref().map(|a| a.name.clone()),
                    &mut up.returning,
                ),
                _ => return ControlFlow::Continue(()),
            },
            Statement::Delete(del) if del.using.is_none() => {
                let (FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t)) = &del.from;
                match t.first().map(|t| &t.relation) {
                    Some(TableFactor::Table { name, alias, .. }) if t.len() == 1 => (
                        name.clone(),
                        alias.as_ref().map(|a| a.name.clone()),
                        &mut del.returning,
                    ),
                    _ => return ControlFlow::Continue(()),
                }
            }
            _ => return ControlFlow::Continue(()),
        };
        let Some(items) = returning else {
            return ControlFlow::Continue(());
        };
        let Some(def) = self.table(&name).filter(|d| d.has_hidden_column()) else {
            return ControlFlow::Continue(());
        };
        // RETURNING qualifies by the alias, or by the table's own name.
        let qualifier = vec![alias.unwrap_or_else(|| Ident::with_quote('"', def.relname()))];
        let scope = [Scoped {
            qualifier: Some(qualifier),
            columns: Some(visible_names(&def)),
        }];
        expand(items, &scope);
        ControlFlow::Continue(())
    }
}

/// Whether any table of the catalog has a hidden key (statements over none skip
/// [`hide`]).
pub fn any(core: &Core) -> bool {
    core.any_table(TableDef::has_hidden_column)
}
