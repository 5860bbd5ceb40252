//! The statements a connection parsed, kept for the next Parse of the same text.
//!
//! Drivers send most statements unnamed and parse them again at every execution
//! (psycopg until a statement's fifth run, and even then a named statement lasts only
//! until the next `ROLLBACK`, which SQLAlchemy sends at the end of every session;
//! node-postgres, asyncpg's unprepared calls). Each Parse rewrites the statement for
//! compatibility, plans it to describe it, and starts a new plan cache, so a search sent
//! this way was planned in full every time. A Parse of text this connection parsed
//! before, with the same declared parameter types, under the same catalog generation
//! and session settings (everything a parse depends on), takes the statement it
//! prepared then, with its plans.

use std::collections::VecDeque;

use datafusion::sql::sqlparser::ast::Statement;
use parking_lot::Mutex;
use pgwire::api::Type;

use super::Prepared;
use crate::sql::Session;

/// Statements kept per connection, the least recently parsed dropped first.
const KEPT: usize = 64;

#[derive(Default)]
pub struct ParseCache(Mutex<VecDeque<(String, Prepared)>>);

impl ParseCache {
    /// What a parse of `sql` with `types` depends on, in `session` now.
    pub fn key(session: &Session, sql: &str, types: &[Option<Type>]) -> String {
        let types: Vec<Option<u32>> = types.iter().map(|t| t.as_ref().map(Type::oid)).collect();
        format!(
            "{}\u{0}{}\u{0}{types:?}\u{0}{sql}",
            session.engine().core().generation(),
            session.settings_key(),
        )
    }

    pub fn get(&self, key: &str) -> Option<Prepared> {
        let mut kept = self.0.lock();
        let at = kept.iter().position(|(k, _)| k == key)?;
        let entry = kept.remove(at)?;
        let prepared = entry.1.clone();
        kept.push_back(entry);
        Some(prepared)
    }

    /// Keep `prepared` if parsing it again would give the same: a query or a write with
    /// parameters (a statement without any usually carries its values as literals, and
    /// is not sent again), not one that names session state such as `EXECUTE`.
    pub fn put(&self, key: String, prepared: &Prepared) {
        let kept_kind = matches!(
            prepared.stmt,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update { .. }
                | Statement::Delete(_)
        );
        if !kept_kind || prepared.described.params.is_empty() {
            return;
        }
        let mut kept = self.0.lock();
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back((key, prepared.clone()));
    }
}
