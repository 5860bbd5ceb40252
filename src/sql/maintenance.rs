//! Postgres' maintenance statements, which sqlparser does not parse in Postgres' forms:
//! `REINDEX`, `VACUUM`, `ANALYZE` and `CHECKPOINT`. Each travels from [`statement`] to
//! [`run`] as a `CALL` of [`STAND_IN`]: verb, kind, then an array per relation it names
//! (the relation as written, then the columns it lists).
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
    Some(parse(head, verb).and_then(|(kind, targets)| {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let args: Vec<String> = [quote(verb), quote(&kind)]
            .into_iter()
            .chain(targets.iter().map(|t| {
                let items: Vec<String> = t.iter().map(|s| quote(s)).collect();
                format!("ARRAY[{}]", items.join(", "))
            }))
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

/// What a maintenance statement names: its kind (REINDEX's INDEX, TABLE, ...; empty
/// for the others) and its targets, each a relation as written followed by the
/// columns it lists (VACUUM and ANALYZE's `t(a, b)`).
type Targets = (String, Vec<Vec<String>>);

fn parse(sql: &str, verb: &str) -> Result<Targets> {
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
    // `(VERBOSE, CONCURRENTLY, ...)`: options that change nothing here, but VACUUM's
    // ANALYZE (unless `ANALYZE false`) lets it name columns.
    let mut analyze = false;
    if p.consume_token(&Token::LParen) {
        let mut depth = 1;
        while depth > 0 {
            match p.next_token().token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Word(w)
                    if ["analyze", "analyse"].contains(&w.value.to_ascii_lowercase().as_str()) =>
                {
                    analyze = !matches!(
                        &p.peek_token().token,
                        Token::Word(v) if ["false", "off"].contains(&v.value.to_ascii_lowercase().as_str())
                    ) && p.peek_token().token != Token::Number("0".into(), false);
                }
                Token::EOF => return Err(Error::Syntax(format!("unterminated {verb} options"))),
                _ => {}
            }
        }
    }
    let mut kind = String::new();
    let mut targets = Vec::new();
    match verb {
        "REINDEX" => {
            kind = p
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
            if !name.is_empty() {
                targets.push(vec![name]);
            }
        }
        "VACUUM" | "ANALYZE" => {
            for w in ["full", "freeze", "verbose"] {
                word(&mut p, w);
            }
            analyze |= word(&mut p, "analyze") || word(&mut p, "analyse");
            while !matches!(p.peek_token().token, Token::EOF | Token::SemiColon) {
                let mut target = vec![p.parse_object_name(false).map_err(syntax)?.to_string()];
                if p.consume_token(&Token::LParen) {
                    let columns = p
                        .parse_comma_separated(|p| p.parse_identifier())
                        .map_err(syntax)?;
                    p.expect_token(&Token::RParen).map_err(syntax)?;
                    if verb == "VACUUM" && !analyze {
                        return Err(Error::Detailed {
                            code: "0A000",
                            message:
                                "ANALYZE option must be specified when a column list is provided"
                                    .into(),
                            detail: String::new(),
                        });
                    }
                    target.extend(columns.iter().map(ident_name));
                }
                targets.push(target);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
        }
        _ => {}
    }
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token().token != Token::EOF {
        return Err(Error::Syntax(format!(
            "syntax error at or near \"{}\"",
            p.peek_token().token
        )));
    }
    Ok((kind, targets))
}

/// A maintenance statement as its stand-in carries it.
pub struct Maintenance {
    verb: String,
    kind: String,
    targets: Vec<Vec<String>>,
}

/// The maintenance statement a `CALL` stands for; `None` for any other call.
pub fn stand_in(f: &Function) -> Option<Maintenance> {
    if !f.name.to_string().eq_ignore_ascii_case(STAND_IN) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let text = |e: &SqlExpr| match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::EscapedStringLiteral(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    let mut args = list.args.iter().map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    });
    let verb = text(args.next()??)?;
    let kind = text(args.next()??)?;
    let targets = args
        .map(|e| match e? {
            SqlExpr::Array(a) => a.elem.iter().map(text).collect(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(Maintenance {
        verb,
        kind,
        targets,
    })
}

fn object_name(text: &str) -> Result<ObjectName> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_object_name(false))
        .map_err(syntax)
}

/// Run a maintenance statement from its stand-in's arguments.
pub async fn run(session: &Session, m: &Maintenance) -> Result<Output> {
    let verb = m.verb.as_str();
    match verb {
        "REINDEX" => {
            let name = m.targets.first().and_then(|t| t.first());
            reindex(session, &m.kind, name.map_or("", String::as_str)).await
        }
        "VACUUM" | "ANALYZE" => {
            if verb == "VACUUM" && session.tx.active() {
                return Err(Error::Detailed {
                    code: "25001",
                    message: "VACUUM cannot run inside a transaction block".into(),
                    detail: String::new(),
                });
            }
            for target in &m.targets {
                let Some((name, columns)) = target.split_first() else {
                    continue;
                };
                let def = session
                    .engine
                    .core()
                    .table(&relation(&object_name(name)?)?.1)?;
                for c in columns {
                    if !def.columns.iter().any(|col| &col.name == c) {
                        return Err(Error::UndefinedColumnOf(c.clone(), def.name.clone()));
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
            use super::indexes::Owned;
            match super::indexes::owner(core, &schema, &index) {
                // The vector index, or a payload index inside it, has data to rebuild.
                Some((d, Owned::Payload)) => vec![d],
                Some((d, Owned::Index(i)))
                    if matches!(d.indexes[i].method.as_str(), "hnsw" | "ivfflat") =>
                {
                    vec![d]
                }
                Some(_) => Vec::new(),
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
