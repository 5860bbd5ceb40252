//! `DO $$ BEGIN ... END $$`: anonymous PL/pgSQL blocks as migrations write them, for the
//! part of the language they use: SQL statements, and `IF [NOT] EXISTS (query) THEN ...
//! [ELSIF ... THEN ...] [ELSE ...] END IF` around them. The block is parsed as an `IF
//! TRUE THEN <body> END IF` statement (Postgres has no top-level IF, so one is always a
//! DO block) and run statement by statement, each condition a query.

use std::future::Future;
use std::pin::Pin;

use datafusion::sql::sqlparser::ast::{IfStatement, Statement};

use super::{Output, Session};
use crate::error::{Error, Result};

/// The statement text a DO block stands for, or `None` if `sql` is not one.
pub fn as_if(sql: &str) -> Option<Result<String>> {
    let t = sql.trim_start();
    t.get(..2).filter(|d| d.eq_ignore_ascii_case("do"))?;
    let rest = t[2..].trim_start();
    if t[2..].len() == rest.len() {
        return None; // `DOMAIN`, `DOUBLE`...: not `DO` followed by space
    }
    let rest = strip_language(rest);
    let (body, after) = quoted(rest)?;
    let after = strip_language(after.trim_start()).trim();
    if !after.trim_end_matches(';').trim().is_empty() {
        return Some(Err(Error::FeatureNotSupported(
            "a DO block must be a statement of its own".into(),
        )));
    }
    Some(body_statements(&body))
}

/// `LANGUAGE plpgsql` before or after the body.
fn strip_language(s: &str) -> &str {
    let lower = s.to_ascii_lowercase();
    for l in ["language plpgsql", "language 'plpgsql'"] {
        if lower.starts_with(l) {
            return s[l.len()..].trim_start();
        }
    }
    s
}

/// The body of `$tag$...$tag$` (or `'...'`, its `''` one quote) at the start of `s`,
/// and what follows.
fn quoted(s: &str) -> Option<(String, &str)> {
    if let Some(inner) = s.strip_prefix('\'') {
        let mut body = String::new();
        let mut rest = inner;
        loop {
            let end = rest.find('\'')?;
            body.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            match rest.strip_prefix('\'') {
                Some(more) => {
                    body.push('\'');
                    rest = more;
                }
                None => return Some((body, rest)),
            }
        }
    }
    let after = s.strip_prefix('$')?;
    let tag_end = after.find('$')?;
    let tag = &s[..tag_end + 2];
    let body = &s[tag.len()..];
    let end = body.find(tag)?;
    Some((body[..end].to_string(), &body[end + tag.len()..]))
}

fn body_statements(body: &str) -> Result<String> {
    let refused = || {
        Error::FeatureNotSupported(
            "DO blocks may hold SQL statements and IF ... THEN ... END IF between BEGIN and END (no DECLARE, loops, RAISE or EXECUTE)".into(),
        )
    };
    let b = body.trim();
    let lower = b.to_ascii_lowercase();
    if !lower.starts_with("begin") {
        return Err(refused());
    }
    let inner = b[5..].trim_end().trim_end_matches(';').trim_end();
    let Some(inner) = inner
        .len()
        .checked_sub(3)
        .filter(|&at| inner[at..].eq_ignore_ascii_case("end"))
        .map(|at| &inner[..at])
    else {
        return Err(refused());
    };
    Ok(format!("IF TRUE THEN {} END IF", elseif(inner)))
}

/// PL/pgSQL's `ELSIF` is the parser's `ELSEIF` (a whole word, outside string literals).
fn elseif(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 8);
    let mut quoted = false;
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut rest = body;
    let mut before: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted
            && !word(before)
            && rest
                .get(..5)
                .is_some_and(|w| w.eq_ignore_ascii_case("elsif"))
            && !word(rest[5..].chars().next())
        {
            out.push_str("ELSEIF");
            rest = &rest[5..];
            before = Some('f');
            continue;
        }
        out.push(c);
        before = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Run a DO block (its `IF TRUE THEN ... END IF`): each branch's condition is a query,
/// the first true one's statements run in order.
pub fn run<'a>(
    session: &'a Session,
    stmt: &'a IfStatement,
) -> Pin<Box<dyn Future<Output = Result<Output>> + Send + 'a>> {
    Box::pin(async move {
        let blocks = std::iter::once(&stmt.if_block)
            .chain(&stmt.elseif_blocks)
            .chain(&stmt.else_block);
        for block in blocks {
            let taken = match &block.condition {
                None => true,
                Some(cond) => {
                    // In WHERE, where the query engine plans [NOT] EXISTS as a join.
                    let sql = format!("SELECT 1 FROM (VALUES (1)) AS vg_do(x) WHERE {cond}");
                    let (rows, _) = super::statements::collect_values(session, &sql).await?;
                    !rows.is_empty()
                }
            };
            if !taken {
                continue;
            }
            for s in block.statements() {
                match s {
                    Statement::If(inner) => {
                        run(session, inner).await?;
                    }
                    // As a statement of its own: the session's read-only and block
                    // checks apply.
                    other => {
                        if let Output::Rows { .. } = session.execute(other.clone()).await? {
                            return Err(Error::Syntax(
                                "query has no destination for result data (a DO block runs statements, not queries)".into(),
                            ));
                        }
                    }
                }
            }
            break;
        }
        Ok(Output::Command("DO".into()))
    })
}
