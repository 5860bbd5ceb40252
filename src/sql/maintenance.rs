//! Postgres' maintenance statements, which sqlparser does not parse in Postgres' forms:
//! `REINDEX`, `VACUUM`, `ANALYZE` and `CHECKPOINT`. Each travels from [`statement`] to
//! [`run`] as a `CALL` of [`STAND_IN`] (verb, kind, then the relations it names).
//!
//! * `REINDEX INDEX i` / `TABLE t` repairs the table's vector index from its rows, as
//!   `vectorgate_reindex` does (an index other than the vector index or a payload index
//!   inside it has no data of its own to rebuild); `SCHEMA s` and `DATABASE` do so for
//!   each of their tables with vectors; `SYSTEM` has nothing to rebuild.
//! * `VACUUM` and `ANALYZE` check what they name and change nothing, with a NOTICE
//!   saying so: the row stores reclaim space themselves and the planner keeps no
//!   statistics.
//! * `CHECKPOINT`: a committed write is on disk already.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    Statement, Value as SqlValue,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::statements::{ident_name, relation};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::TableDef;

const STAND_IN: &str = "vectorgate_maintenance";

const VERBS: [&str; 4] = ["REINDEX", "VACUUM", "ANALYZE", "CHECKPOINT"];

fn syntax(e: ParserError) -> Error {
    Error::Syntax(e.to_string().replace("sql parser error: ", ""))
}

/// The `CALL` standing for a maintenance statement; `None` for any other statement.
pub fn statement(sql: &str) -> Option<Result<Statement>> {
    let head = sql.trim_start();
    let word: String = head
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    // `ANALYSE` is Postgres' other spelling.
    let verb = if word == "ANALYSE" { "ANALYZE" } else { &word };
    if !VERBS.contains(&verb) {
        return None;
    }
    Some(parse(head, verb).and_then(|args| {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let args: Vec<String> = std::iter::once(verb)
            .chain(args.iter().map(String::as_str))
            .map(quote)
            .collect();
        let call = format!("CALL {STAND_IN}({})", args.join(", "));
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, &call)
            .map_err(syntax)?
            .pop()
            .ok_or_else(|| Error::internal("maintenance stand-in"))?;
        super::literals::printable(&mut stmt);
        Ok(stmt)
    }))
}

/// The statement's kind (REINDEX's INDEX, TABLE, ...; empty for the others) and the
/// relations it names (`t` or `t(a, b)` for VACUUM and ANALYZE, as written).
fn parse(sql: &str, verb: &str) -> Result<Vec<String>> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(syntax)?;
    p.next_token();
    let word = |p: &mut Parser, w: &str| {
        if let Token::Word(x) = &p.peek_token().token
            && x.value.eq_ignore_ascii_case(w)
        {
            p.next_token();
            true
        } else {
            false
        }
    };
    // `(VERBOSE, CONCURRENTLY, ...)`: options that change nothing here.
    if p.consume_token(&Token::LParen) {
        let mut depth = 1;
        while depth > 0 {
            match p.next_token().token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::EOF => return Err(Error::Syntax(format!("unterminated {verb} options"))),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    match verb {
        "REINDEX" => {
            let kind = p
                .parse_identifier()
                .map_err(syntax)?
                .value
                .to_ascii_uppercase();
            if !["INDEX", "TABLE", "SCHEMA", "DATABASE", "SYSTEM"].contains(&kind.as_str()) {
                return Err(Error::Syntax(format!("syntax error at or near \"{kind}\"")));
            }
            word(&mut p, "concurrently");
            let name = match p.peek_token().token {
                Token::EOF | Token::SemiColon => String::new(),
                _ => p.parse_object_name(false).map_err(syntax)?.to_string(),
            };
            if name.is_empty() && matches!(kind.as_str(), "INDEX" | "TABLE" | "SCHEMA") {
                return Err(Error::Syntax(format!(
                    "syntax error: REINDEX {kind} needs a name"
                )));
            }
            out.push(kind);
            out.push(name);
        }
        "VACUUM" | "ANALYZE" => {
            for w in ["full", "freeze", "verbose", "analyze", "analyse"] {
                word(&mut p, w);
            }
            out.push(String::new());
            while !matches!(p.peek_token().token, Token::EOF | Token::SemiColon) {
                let name = p.parse_object_name(false).map_err(syntax)?;
                let mut item = name.to_string();
                if p.consume_token(&Token::LParen) {
                    let columns = p
                        .parse_comma_separated(|p| p.parse_identifier())
                        .map_err(syntax)?;
                    p.expect_token(&Token::RParen).map_err(syntax)?;
                    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
                    item = format!("{item}({})", columns.join(", "));
                }
                out.push(item);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
        }
        _ => out.push(String::new()),
    }
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "syntax error at or near \"{}\"",
            p.peek_token().token
        )));
    }
    Ok(out)
}

/// The arguments of a maintenance stand-in (verb, kind, relations); `None` for any
/// other call.
pub fn stand_in(f: &Function) -> Option<Vec<String>> {
    if !f.name.to_string().eq_ignore_ascii_case(STAND_IN) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v))) => match &v.value {
                SqlValue::SingleQuotedString(s) | SqlValue::EscapedStringLiteral(s) => {
                    Some(s.clone())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn object_name(text: &str) -> Result<ObjectName> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_object_name(false))
        .map_err(syntax)
}

/// Run a maintenance statement from its stand-in's arguments.
pub async fn run(session: &Session, args: &[String]) -> Result<Output> {
    let (verb, kind, names) = match args {
        [verb, kind, names @ ..] => (verb.as_str(), kind.as_str(), names),
        _ => return Err(Error::internal("maintenance stand-in arguments")),
    };
    match verb {
        "REINDEX" => reindex(session, kind, names.first().map_or("", String::as_str)).await,
        "VACUUM" | "ANALYZE" => {
            if verb == "VACUUM" && session.tx.active() {
                return Err(Error::Detailed {
                    code: "25001",
                    message: "VACUUM cannot run inside a transaction block".into(),
                    detail: String::new(),
                });
            }
            for item in names {
                let (name, columns) = match item.split_once('(') {
                    Some((n, cols)) => (n, Some(cols.trim_end_matches(')'))),
                    None => (item.as_str(), None),
                };
                let def = session
                    .engine
                    .core()
                    .table(&relation(&object_name(name)?)?.1)?;
                for c in columns.into_iter().flat_map(|c| c.split(',')) {
                    let c = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(c.trim())
                        .and_then(|mut p| p.parse_identifier())
                        .map(|i| ident_name(&i))
                        .map_err(syntax)?;
                    if !def.columns.iter().any(|col| col.name == c) {
                        return Err(Error::UndefinedColumn(format!(
                            "column \"{c}\" of relation \"{}\" does not exist",
                            def.name
                        )));
                    }
                }
            }
            session.notices.push(if verb == "VACUUM" {
                "VACUUM changes nothing in vectorgate: its row stores reclaim space themselves"
                    .to_string()
            } else {
                "ANALYZE changes nothing in vectorgate: its planner keeps no statistics".to_string()
            });
            Ok(Output::Command(verb.into()))
        }
        _ => Ok(Output::Command("CHECKPOINT".into())),
    }
}

/// `REINDEX`: the vector index of each table it reaches repaired from the rows.
async fn reindex(session: &Session, kind: &str, name: &str) -> Result<Output> {
    let core = session.engine.core();
    let tables: Vec<Arc<TableDef>> = match kind {
        "TABLE" => vec![core.table(&relation(&object_name(name)?)?.1)?],
        "INDEX" => {
            let n = object_name(name)?;
            let schema = relation(&n)?.0.unwrap_or_else(|| "public".into());
            let index =
                n.0.last()
                    .and_then(|p| p.as_ident())
                    .map(ident_name)
                    .unwrap_or_default();
            let owner = core.tables().into_iter().find_map(|d| {
                if d.schema() != schema {
                    return None;
                }
                // The vector index, or a payload index inside it, has data to rebuild.
                let vector = d.json_indexes.iter().any(|j| j.name == index)
                    || d.indexes.iter().any(|i| {
                        i.name == index && matches!(i.method.as_str(), "hnsw" | "ivfflat")
                    });
                let other = d.pk_name() == index
                    || d.unique.iter().any(|u| u.name == index)
                    || d.indexes.iter().any(|i| i.name == index);
                (vector || other).then_some((d, vector))
            });
            match owner {
                Some((d, true)) => vec![d],
                Some((_, false)) => Vec::new(),
                None => return Err(Error::UndefinedTable(index)),
            }
        }
        "SCHEMA" => {
            let n = object_name(name)?;
            let schema =
                n.0.last()
                    .and_then(|p| p.as_ident())
                    .map(ident_name)
                    .unwrap_or_default();
            if schema != "public"
                && !super::schemas::is_system(&schema)
                && !core.has_schema(&schema)
            {
                return Err(Error::Detailed {
                    code: "3F000",
                    message: format!("schema \"{schema}\" does not exist"),
                    detail: String::new(),
                });
            }
            core.tables()
                .into_iter()
                .filter(|d| d.schema() == schema)
                .collect()
        }
        "DATABASE" => core.tables(),
        _ => Vec::new(),
    };
    let tables: Vec<_> = tables.into_iter().filter(|d| d.indexed()).collect();
    if !tables.is_empty() && session.read_only() {
        return Err(Error::ReadOnly(
            "cannot execute REINDEX in a read-only transaction".into(),
        ));
    }
    for def in tables {
        let r = crate::engine::sync::reindex(
            core.rows.as_ref(),
            core.index.as_ref(),
            &def,
            true,
            &mut |_| {},
        )
        .await?;
        tracing::info!(table = %def.name, ?r, "REINDEX done");
    }
    Ok(Output::Command("REINDEX".into()))
}
