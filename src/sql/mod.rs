//! The SQL engine. Statements are parsed with a Postgres-compatible parser; DDL and
//! writes are carried out here against the stores ([`statements`]); queries are planned
//! and run by Apache DataFusion over the tables of [`tables`] and the
//! `vector_search` table function of [`vector_search`]. [`params`] types and binds the
//! `$n` parameters of the extended protocol.

pub mod advisory;
pub(crate) mod alter;
pub mod apply;
mod array_literals;
mod array_operators;
mod casts;
pub mod catalog;
pub(crate) mod clock;
pub mod colnames;
pub mod compat;
pub mod constraints;
pub mod copy;
pub(crate) mod defaults;
pub mod direct;
pub mod do_block;
pub(crate) mod for_update;
pub(crate) mod indexes;
mod intervals;
mod joined_search;
pub mod json;
pub mod json_index;
pub mod literals;
pub mod maintenance;
pub mod ordinality;
pub mod params;
pub mod pgvector;
pub mod plan_cache;
pub(crate) mod prepare;
pub mod pushdown;
pub mod reindex;
mod retype;
pub mod row_ids;
pub mod schemas;
pub mod sequences;
pub mod statements;
pub mod tables;
pub mod text_functions;
mod time_zones;
pub mod truncate;
pub mod vector_agg;
pub mod vector_ops;
pub mod vector_search;
pub mod writable_cte;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use parking_lot::Mutex;

use crate::engine::tx::TxSlot;
use crate::engine::{Core, Limits, Notices};
use crate::error::{Error, Result};
use crate::store::{RowStore, VectorIndex};
use datafusion::catalog::CatalogProvider;
use vector_search::{SearchSettings, VectorSearchFunction};

/// The database (DataFusion catalog) name the proxy presents.
pub const DATABASE: &str = "vectorgate";

/// What a statement produced.
pub enum Output {
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    Command(String),
    TransactionStart(String),
    TransactionEnd(String),
    /// The client is to send COPY data for this many columns (in the binary format).
    CopyIn {
        columns: usize,
        binary: bool,
    },
    /// COPY TO STDOUT: these rows (an [`Output::Rows`]), sent as `options` say; `names`
    /// are the columns' (for a header line; empty for a query's).
    CopyOut {
        rows: Box<Output>,
        names: Vec<String>,
        options: copy::Options,
    },
    /// Rows a write returned (`RETURNING`), under the write's own command tag without
    /// its count (`INSERT 0`, `UPDATE`, `DELETE`).
    Written {
        tag: &'static str,
        schema: SchemaRef,
        batch: datafusion::arrow::record_batch::RecordBatch,
    },
    Empty,
}

impl Output {
    /// Rows that are all in one batch already.
    pub fn batch(schema: SchemaRef, batch: datafusion::arrow::record_batch::RecordBatch) -> Output {
        let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(vec![Ok(batch)]),
        );
        Output::Rows {
            schema,
            stream: Box::pin(stream),
        }
    }
}

/// What CREATE and DROP DATABASE ask of the server, and what `pg_database` lists: the
/// databases besides the one the server was started for.
#[async_trait::async_trait]
pub trait DatabaseAdmin: Send + Sync {
    /// The databases CREATE DATABASE made, sorted.
    fn names(&self) -> Vec<String>;
    /// 42P04 if it exists.
    async fn create(&self, name: &str) -> Result<()>;
    /// False if there is no such database; 55006 while one is in use, or is `current`.
    async fn drop_database(&self, name: &str, current: Option<&str>) -> Result<bool>;
}

pub struct Engine {
    pub(crate) core: Arc<Core>,
    base: SessionState,
    parser: PostgresCompatibilityParser,
    /// The server's databases, for CREATE and DROP DATABASE.
    databases: catalog::DatabasesRef,
    /// Sessions open on this engine (for DROP DATABASE's count of them).
    sessions: std::sync::atomic::AtomicUsize,
}

impl Engine {
    pub async fn new(
        rows: Arc<dyn RowStore>,
        index: Arc<dyn VectorIndex>,
        limits: Limits,
    ) -> Result<Arc<Engine>> {
        let shared = Core::open(rows, index, &limits).await?;
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, "public")
            .with_create_default_catalog_and_schema(true)
            // information_schema is registered below, in Postgres' words.
            .with_information_schema(false)
            .with_target_partitions(2)
            // `x::timestamptz` is a timestamp with time zone (UTC, the zone vectorgate
            // keeps them in), announced and read back as one, not a naive timestamp.
            .set_str("datafusion.execution.time_zone", "UTC");
        // The JSON operators are planned before the query engine's own readings of
        // `@>`, `->` and `||`.
        let json_functions = json::functions();
        let vector_operators = vector_ops::functions();
        let mut builder = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rule(Arc::new(casts::PgCasts::new()));
        if let Some(planners) = builder.expr_planners() {
            planners.insert(0, Arc::new(json::JsonOperators::new(&json_functions)));
            // Before the JSON operators: `tags @> '{a}'` reaches them as two arrays.
            planners.insert(0, Arc::new(array_operators::ArrayOperators));
            planners.insert(
                0,
                Arc::new(vector_ops::VectorOperators::new(&vector_operators)),
            );
        }
        let ctx = SessionContext::new_with_state(builder.build());
        let databases: catalog::DatabasesRef = Arc::default();
        let database = Arc::new(tables::Database {
            inner: ctx
                .catalog(DATABASE)
                .ok_or_else(|| Error::internal("default catalog missing"))?,
            shared: Arc::downgrade(&shared),
        });
        // `public` finds the system views Postgres' search path finds there too.
        let system: tables::System = Arc::default();
        database.register_schema(
            "public",
            Arc::new(tables::Tables {
                shared: Arc::downgrade(&shared),
                schema: "public".into(),
                system: system.clone(),
            }),
        )?;
        ctx.register_catalog(DATABASE, database);
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
            .map_err(|e| Error::internal(e.to_string()))?;
        ctx.register_udtf(
            "vectorgate_reindex",
            Arc::new(reindex::ReindexFunction {
                shared: Arc::downgrade(&shared),
            }),
        );
        ctx.register_udtf(
            "vector_search",
            Arc::new(VectorSearchFunction {
                shared: Arc::downgrade(&shared),
            }),
        );
        // What this engine's catalog queries see of pg_class, for functions by OID.
        let seen = catalog::Seen::default();
        // Correct pg_attribute and format_type for the declared column types.
        let catalog = ctx
            .catalog(DATABASE)
            .ok_or_else(|| Error::internal("default catalog missing"))?;
        if let Some(inner) = catalog.schema("pg_catalog") {
            let overlay: Arc<dyn datafusion::catalog::SchemaProvider> =
                Arc::new(catalog::PgCatalogOverlay {
                    inner,
                    shared: Arc::downgrade(&shared),
                    seen: seen.clone(),
                    databases: databases.clone(),
                });
            catalog.register_schema("pg_catalog", overlay.clone())?;
            let _ = system.set(overlay);
        }
        catalog.register_schema(
            "information_schema",
            Arc::new(catalog::InformationSchema {
                inner: Arc::new(
                    datafusion::catalog::information_schema::InformationSchemaProvider::new(
                        ctx.state().catalog_list().clone(),
                    ),
                ),
                shared: Arc::downgrade(&shared),
            }),
        )?;
        if let Some(inner) = ctx.state().scalar_functions().get("format_type").cloned() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
                catalog::FormatType::new(inner),
            ));
        }
        for name in catalog::TEXT_ARRAY_FUNCTIONS {
            if let Some(inner) = ctx.state().scalar_functions().get(name).cloned() {
                ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
                    catalog::TextArrays::new(inner),
                ));
            }
        }
        ctx.register_udf(compat::Format::udf());
        for f in text_functions::all() {
            ctx.register_udf(f);
        }
        ctx.register_udf(compat::CastUuid::udf());
        ctx.register_udf(compat::VarcharElements::udf());
        ctx.register_udf(time_zones::AtTimeZone::udf());
        ctx.register_udf(compat::RandomUuid::udf());
        for f in catalog::extra_functions(&seen) {
            ctx.register_udf(f);
        }
        for f in pgvector::DistanceFunction::all() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(f));
        }
        for f in pgvector::VectorFunction::all() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(f));
        }
        for f in pgvector::VectorToVector::all() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(f));
        }
        for f in vector_operators {
            ctx.register_udf(f);
        }
        for f in pgvector::BitFunction::all() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(f));
        }
        for f in &json_functions {
            ctx.register_udf(f.clone());
        }
        for f in json::JsonAgg::all() {
            ctx.register_udaf(f);
        }
        for f in vector_agg::VectorAgg::all() {
            ctx.register_udaf(f);
        }
        Ok(Arc::new(Engine {
            core: shared,
            base: ctx.state(),
            parser: PostgresCompatibilityParser::new(),
            databases,
            sessions: Default::default(),
        }))
    }

    /// `PREPARE name [(types)] AS statement` (the statement from `at`), the statement
    /// read as any other is; statements after it in `sql` follow.
    fn parse_prepare(&self, sql: &str, at: usize) -> Result<Vec<Statement>> {
        let header = format!("{}SELECT 1", &sql[..at]);
        let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            &header,
        )
        .map_err(|e| Error::Syntax(e.to_string().replace("sql parser error: ", "")))?;
        let Some(Statement::Prepare {
            name, data_types, ..
        }) = parsed.into_iter().next()
        else {
            return Err(Error::Syntax(format!(
                "syntax error in \"{}\"",
                sql[..at].trim()
            )));
        };
        let mut stmts = self.parse(&sql[at..])?;
        if stmts.is_empty() {
            return Err(Error::Syntax("PREPARE without a statement".into()));
        }
        let statement = Box::new(stmts.remove(0));
        stmts.insert(
            0,
            Statement::Prepare {
                name,
                data_types,
                statement,
            },
        );
        Ok(stmts)
    }

    pub fn set_databases(&self, databases: std::sync::Weak<dyn DatabaseAdmin>) {
        *self.databases.write() = Some(databases);
    }

    /// How many sessions are open on this engine.
    pub fn sessions(&self) -> usize {
        self.sessions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The server's databases (0A000 for an engine outside a server).
    pub(crate) fn databases(&self) -> Result<Arc<dyn DatabaseAdmin>> {
        let databases = self.databases.read().as_ref().and_then(|d| d.upgrade());
        databases.ok_or_else(|| {
            Error::FeatureNotSupported("CREATE and DROP DATABASE need a server".into())
        })
    }

    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        if let Some(at) = prepare::split(sql) {
            return self.parse_prepare(sql, at);
        }
        if let Some(block) = do_block::as_if(sql) {
            return self.parse(&block?);
        }
        if let Some(maintenance) = maintenance::statement(sql) {
            return Ok(vec![maintenance?]);
        }
        // Correlated subqueries in a select list over tables: run per outer row.
        let marked = apply::marked_if_any(sql, &self.core);
        let sql = match &marked {
            Some(m) => m.as_str(),
            None => {
                self.refuse_dropped_subqueries(sql)?;
                sql
            }
        };
        let sql = match array_literals::array_literals(sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => std::borrow::Cow::Borrowed(sql),
        };
        let sql = pgvector::regproc_literals(&sql);
        let sql = pgvector::attrdef_subquery(&sql);
        let sql = pgvector::psql_foreign_keys(&sql);
        let sql = pgvector::l1_operator(&sql);
        let sql = match sequences::nextval_regclass_literals(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match sequences::without_identity_sequence_name(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match sequences::canonical_sequence_options(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match sequences::alter_sequence_statement(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match constraints::set_constraints_statements(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match compat::qualified_operators(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match compat::system_regclass(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let sql = match for_update::stricter_lock_modes(&sql) {
            Some(s) => std::borrow::Cow::Owned(s),
            None => sql,
        };
        let syntax = |e: datafusion::sql::sqlparser::parser::ParserError| {
            Error::Syntax(e.to_string().replace("sql parser error: ", ""))
        };
        // The compatibility parser swaps some catalog queries it cannot run for stand-ins
        // before parsing; one of them is Grafana's search_path lookup, which runs here
        // (`current_setting`, functions in FROM) and must not become `''`. Such a
        // statement gets only its rewrite rules.
        // Django's introspection (`unnest(...) WITH ORDINALITY`, `ARRAY(subquery)`) is
        // taken apart before the compatibility parser's rules, which would drop its
        // correlated subqueries.
        let taken_apart = if pgvector::mentions(&sql, "with ordinality") {
            datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                &sql,
            )
            .ok()
            .and_then(|mut stmts| {
                let mut changed = false;
                for s in &mut stmts {
                    changed |= ordinality::rewrite(s);
                }
                changed.then_some(stmts)
            })
        } else {
            None
        };
        let mut stmts = if let Some(stmts) = taken_apart {
            stmts.into_iter().map(|s| self.parser.rewrite(s)).collect()
        } else if pgvector::mentions(&sql, "current_setting('search_path')") {
            datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                &sql,
            )
            .map_err(syntax)?
            .into_iter()
            .map(|s| self.parser.rewrite(s))
            .collect()
        } else {
            self.parser.parse(&sql).map_err(syntax)?
        };
        // The catalog rewrites only concern statements that name the catalog; searches
        // and writes skip them.
        let catalog =
            pgvector::mentions(&sql, "pg_") || pgvector::mentions(&sql, "information_schema");
        let user_tables: Vec<String> = if catalog {
            self.core.table_names()
        } else {
            Vec::new()
        };
        let nextvals = pgvector::mentions(&sql, "nextval");
        let uuids = pgvector::mentions(&sql, "uuid");
        let varchars = pgvector::mentions(&sql, "varchar")
            || pgvector::mentions(&sql, "character varying")
            || sql.contains("\"char\"");
        let byteas = pgvector::mentions(&sql, "bytea");
        let numbers = pgvector::mentions(&sql, "float")
            || pgvector::mentions(&sql, "numeric")
            || pgvector::mentions(&sql, "dec");
        let mods = pgvector::mentions(&sql, "mod(");
        let zones = pgvector::mentions(&sql, "time zone");
        let intervals = pgvector::mentions(&sql, "interval");
        let dates = pgvector::mentions(&sql, "date_trunc");
        let clocks = pgvector::mentions(&sql, "current_") || pgvector::mentions(&sql, "local");
        let regexes = sql.contains('~') || pgvector::mentions(&sql, "regexp_");
        for s in &mut stmts {
            if catalog {
                let _ = ordinality::rewrite(s);
                pgvector::aggregate_catalog_subqueries(s, &user_tables);
                pgvector::int2vector_functions(s);
                pgvector::pg_expandarray(s);
                pgvector::regproc_joins(s);
                pgvector::name_subscripts(s);
                pgvector::regproc_oids(s);
                pgvector::catalog_tableoids(s);
                pgvector::projected_in_subqueries(s);
                compat::computed_regclass(s);
            }
            colnames::postgres_column_names(s);
            // Not in DDL: a column default keeps its text as written (`'{}'::jsonb`), an
            // index its expression.
            if !matches!(
                s,
                Statement::CreateTable(_) | Statement::AlterTable(_) | Statement::CreateIndex(_)
            ) {
                json::rewrite(s);
                if clocks {
                    clock::sql_clocks(s);
                }
                if dates {
                    compat::date_trunc_units(s);
                }
                if varchars {
                    compat::varchar_casts(s);
                }
                if uuids {
                    compat::uuid_casts(s);
                }
                if byteas {
                    compat::bytea_literals(s);
                }
                if numbers {
                    compat::number_casts(s);
                }
                if mods {
                    compat::mod_function(s);
                }
                if zones {
                    time_zones::at_time_zone(s);
                }
                if intervals {
                    intervals::interval_literals(s);
                }
            }
            // Not in DDL: a column default keeps its text as written.
            if nextvals
                && matches!(
                    s,
                    Statement::Query(_)
                        | Statement::Insert(_)
                        | Statement::Update(_)
                        | Statement::Delete(_)
                )
            {
                sequences::number_nextvals(s);
            }
            compat::user_registers(s);
            if sql.contains("^@") {
                compat::starts_with_operator(s);
            }
            compat::like_escapes(s);
            if regexes {
                text_functions::regex_patterns(s);
            }
            compat::guard_not_in(s);
            compat::from_functions(s, &|f| {
                self.base.scalar_functions().contains_key(f)
                    && !self.base.table_functions().contains_key(f)
            });
            pgvector::rewrite(s, &self.core);
            pgvector::array_subqueries(s);
            if catalog {
                pgvector::options_subqueries(s);
            }
            pgvector::recursive_case_subqueries(s);
            literals::printable(s);
        }
        Ok(stmts)
    }

    /// The compatibility parser replaces correlated subqueries in a select list with
    /// NULL, which catalog queries of psql and drivers rely on. On the user's own tables
    /// that would be a wrong answer, so such a statement is refused (0A000) instead.
    fn refuse_dropped_subqueries(&self, sql: &str) -> Result<()> {
        if sql.to_ascii_lowercase().matches("select").count() < 2 {
            return Ok(());
        }
        let Ok(stmts) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        ) else {
            return Ok(());
        };
        for stmt in &stmts {
            if pgvector::projects_correlated_subquery(stmt)
                && pgvector::relations(stmt)
                    .iter()
                    .any(|r| self.core.has_table(r))
            {
                return Err(Error::FeatureNotSupported(
                    "a correlated subquery in the select list is not supported; write it as a JOIN"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The engine core below this SQL layer.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn rows(&self) -> &Arc<dyn RowStore> {
        &self.core.rows
    }

    pub fn index(&self) -> &Arc<dyn VectorIndex> {
        &self.core.index
    }
}

/// One client connection's state: its DataFusion context and its settings.
pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) ctx: SessionContext,
    settings: Arc<Mutex<BTreeMap<String, String>>>,
    /// A COPY FROM STDIN in progress.
    pub(crate) copy: Mutex<Option<copy::CopyIn>>,
    /// NOTICEs for the client, sent after the statement that left them.
    pub notices: Notices,
    options: SessionOptions,
    /// The open transaction block, if any; the query context holds it too, so that
    /// scans and searches see the block's own writes.
    pub(crate) tx: Arc<TxSlot>,
    /// `currval`/`lastval` of this session.
    pub(crate) sequence_values: Arc<sequences::SessionValues>,
    /// While a data-modifying CTE runs: the CTEs before it, as `WITH ...`, put in front
    /// of the queries that find its rows.
    pub(crate) cte_prefix: Mutex<Option<String>>,
    /// The advisory locks the session holds.
    pub(crate) locks: Arc<advisory::SessionLocks>,
    /// The session's name in its engine's row locks.
    row_owner: u64,
    /// What `PREPARE` named.
    pub(crate) sql_prepared: prepare::PreparedStatements,
    /// When the client's current statement arrived (`statement_timestamp()`).
    statement_clock: Arc<clock::StatementClock>,
}

impl Drop for Session {
    /// A session's advisory locks end with it; its engine counts one session fewer.
    fn drop(&mut self) {
        self.engine
            .sessions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.engine.core.row_locks.forget(self.row_owner);
        if !self.locks.any() {
            return;
        }
        let (locks, core) = (self.locks.clone(), self.engine.core.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { locks.release_all(&core).await });
        }
    }
}

/// What a session starts with, from the server's settings and the user.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// The user may not write (SQLSTATE 25006).
    pub read_only: bool,
    /// `statement_timeout` until the session sets its own.
    pub statement_timeout: Option<std::time::Duration>,
    /// The user the client logged in as (`current_user`, `session_user`, `user`).
    pub user: Option<String>,
    /// The database the client named, when it is one CREATE DATABASE made
    /// (`current_database()`).
    pub database: Option<String>,
    /// The process id the client was given (`pg_backend_pid()`).
    pub pid: i32,
}

/// Where a session stands, as ReadyForQuery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    Idle,
    InBlock,
    Failed,
}

impl Session {
    /// Whether the session is inside a transaction block, and whether it failed.
    pub fn block_status(&self) -> BlockStatus {
        if !self.tx.active() {
            BlockStatus::Idle
        } else if self.tx.failed() {
            BlockStatus::Failed
        } else {
            BlockStatus::InBlock
        }
    }

    /// A statement failed: inside a block, the block fails (25P02 until it ends).
    pub fn statement_failed(&self) {
        self.tx.fail();
    }

    /// Refuse a statement in a failed block, unless it ends the block or rolls back
    /// to a savepoint.
    fn check_block(&self, stmt: &Statement) -> Result<()> {
        if self.tx.failed()
            && !matches!(stmt, Statement::Rollback { .. } | Statement::Commit { .. })
        {
            return Err(Error::Transaction {
                code: "25P02",
                message: "current transaction is aborted, commands ignored until end of transaction block".into(),
            });
        }
        Ok(())
    }

    /// The open block's changes to a table, if it has any.
    pub(crate) fn pending(&self, table: &str) -> Option<Arc<crate::engine::tx::Pending>> {
        self.tx.pending(table)
    }

    /// What to give [`Session::lock_rows`] for rows read from now on.
    pub(crate) fn rows_seen(&self) -> u64 {
        self.engine.core.row_locks.seen()
    }

    /// Lock the rows of `def` with `keys` until the session's transaction ends (the
    /// statement, outside a block), waiting for the sessions that are changing them:
    /// `true` when one of them may have changed since `seen` (read them again).
    pub(crate) async fn lock_rows<'a>(
        &self,
        def: &crate::store::TableDef,
        keys: impl IntoIterator<Item = &'a [crate::types::Value]>,
        seen: u64,
    ) -> Result<bool> {
        let keys = keys.into_iter().map(crate::store::keys::encode);
        self.engine
            .core
            .row_locks
            .lock(self.row_owner, &def.name, keys, seen)
            .await
    }

    /// Take the row locks `names` (table, encoded key) if no other session holds one:
    /// see [`crate::engine::row_locks::RowLocks::try_take`].
    pub(crate) fn try_lock_rows(&self, names: &[(String, Vec<u8>)], seen: u64) -> Option<bool> {
        self.engine
            .core
            .row_locks
            .try_take(self.row_owner, names, seen)
    }

    /// Outside a transaction block, the row locks of the statement that ended go.
    pub(crate) fn row_locks_ended(&self) {
        if !self.tx.active() {
            self.engine.core.row_locks.release(self.row_owner);
        }
    }

    /// Rows by key as this session sees them (its block's writes over the store's).
    pub(crate) async fn get_rows(
        &self,
        def: &crate::store::TableDef,
        keys: &[Vec<crate::types::Value>],
    ) -> Result<Vec<Option<crate::store::Row>>> {
        let pending = self.pending(&def.name);
        crate::engine::tx::get(&self.engine.core, pending.as_deref(), def, keys).await
    }

    pub fn new(engine: Arc<Engine>) -> Session {
        Session::with_options(engine, SessionOptions::default())
    }

    pub fn with_options(engine: Arc<Engine>, options: SessionOptions) -> Session {
        engine
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ctx = SessionContext::new_with_state(engine.base.clone());
        if let Some(user) = &options.user {
            for name in ["session_user", "current_user"] {
                ctx.register_udf(catalog::constant_text(name, user));
            }
        }
        if let Some(db) = &options.database {
            ctx.register_udf(catalog::constant_text("current_database", db));
        }
        ctx.register_udf(catalog::constant_int("pg_backend_pid", options.pid));
        // `current_setting` sees the session's own SETs, as SHOW does.
        let settings: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let (seen, opts) = (settings.clone(), options.clone());
        ctx.register_udf(catalog::current_setting_udf(Arc::new(move |name: &str| {
            setting(&seen.lock(), &opts, name)
                .or_else(|| statements::default_setting(name).map(str::to_string))
        })));
        let sequence_values: Arc<sequences::SessionValues> = Arc::default();
        for f in sequences::functions(Arc::downgrade(&engine.core), sequence_values.clone()) {
            ctx.register_udf(f);
        }
        let notices = Notices::default();
        let locks: Arc<advisory::SessionLocks> = Arc::default();
        for f in advisory::functions(Arc::downgrade(&engine.core), locks.clone(), notices.clone()) {
            ctx.register_udf(f);
        }
        let tx = Arc::new(TxSlot::new(engine.core.max_transaction_rows));
        let statement_clock: Arc<clock::StatementClock> = Arc::default();
        let now = ctx
            .state_ref()
            .read()
            .scalar_functions()
            .get("now")
            .cloned();
        for f in clock::functions(now, &tx, &statement_clock) {
            ctx.register_udf(f);
        }
        ctx.register_udf(clock::timeofday());
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(tx.clone());
        let session = Session {
            engine,
            ctx,
            settings: settings.clone(),
            copy: Mutex::new(None),
            notices,
            options,
            tx,
            cte_prefix: Mutex::new(None),
            sequence_values,
            locks,
            sql_prepared: Default::default(),
            statement_clock,
            row_owner: {
                static OWNERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                OWNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        };
        // The search settings carry the session's notice list, even before any SET.
        session.apply_settings();
        session
    }

    /// The database the session is connected to, when it is one CREATE DATABASE made.
    pub fn database(&self) -> Option<&str> {
        self.options.database.as_deref()
    }

    /// The name of the session's database, as `current_database()` gives it.
    pub fn database_name(&self) -> &str {
        self.database().unwrap_or(DATABASE)
    }

    /// The process id the client was given in BackendKeyData.
    pub fn pid(&self) -> i32 {
        self.options.pid
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The session's settings, and whether it may write, as text: a statement parsed or
    /// planned under the same text would be parsed or planned the same way.
    pub fn settings_key(&self) -> String {
        let read_only = self.read_only();
        format!("{:?}|{read_only}|", self.settings.lock())
    }

    /// The session may not write: a read-only user, or `SET default_transaction_read_only`.
    pub fn read_only(&self) -> bool {
        let on = |name: &str| {
            self.settings
                .lock()
                .get(name)
                .is_some_and(|v| matches!(v.as_str(), "on" | "true" | "1"))
        };
        self.options.read_only
            || self.tx.read_only()
            || on("default_transaction_read_only")
            || on("transaction_read_only")
    }

    /// Prepared statements may take their direct path or reuse the plan made at Parse
    /// (`SET vectorgate.direct = off` plans every execution from its text, as the tests
    /// compare).
    fn direct_paths(&self) -> bool {
        self.settings
            .lock()
            .get("vectorgate.direct")
            .is_none_or(|v| matches!(v.as_str(), "on" | "true" | "1"))
    }

    /// A client's statement arrived (a simple Query, however many statements it holds,
    /// or an Execute): `statement_timestamp()`, and `now()` outside a block, are now.
    pub fn statement_began(&self) {
        self.statement_clock.mark();
    }

    /// Run one statement.
    pub async fn execute(&self, stmt: Statement) -> Result<Output> {
        self.check_block(&stmt)?;
        for_update::refuse_nested(&stmt)?;
        self.engine.core.fresh_catalog().await;
        if let Some(verb) = statements::write_verb(&stmt)
            && self.read_only()
        {
            return Err(Error::ReadOnly(format!(
                "cannot execute {verb} in a read-only transaction"
            )));
        }
        let out = match statements::execute(self, &stmt).await {
            Ok(Some(out)) => Ok(out),
            Ok(None) => self.query(stmt).await,
            Err(e) => Err(e),
        };
        self.statement_ended().await;
        out
    }

    /// After a statement: outside a transaction block, its row locks and
    /// transaction-level advisory locks end with it (and a block's, once COMMIT or
    /// ROLLBACK ended it).
    pub async fn statement_ended(&self) {
        self.row_locks_ended();
        if !self.tx.active() && self.locks.any_xact() {
            self.locks.release(&self.engine.core, true).await;
        }
    }

    /// Plan and run a query through DataFusion. A catalog query with a correlated
    /// subquery DataFusion cannot run (SQLAlchemy's identity lookup through
    /// `pg_sequence`, psql's `\d+` unnesting an outer row's reloptions) has it answer
    /// NULL: first those [`pgvector::null_catalog_subqueries`] finds undecorrelatable,
    /// then, if the optimised plan still holds a scalar subquery (which DataFusion's
    /// physical planner refuses), every one. Decided from the statement's and the
    /// plan's shapes, never from an error's text.
    pub(crate) async fn query(&self, stmt: Statement) -> Result<Output> {
        // Most statements have no scalar subquery: nothing to look into.
        if !pgvector::has_scalar_subquery(&stmt) {
            return self.run_query(stmt).await;
        }
        let user_tables: Vec<String> = self.engine.core.table_names();
        let mut all = stmt.clone();
        if !pgvector::null_catalog_subqueries(&mut all, &user_tables, true) {
            // Nothing a catalog query could give up: run it as it is.
            return self.run_query(stmt).await;
        }
        // `FROM unnest(outer.column)` (DataFusion has no such table function) is given
        // up in any case.
        if !pgvector::unnests_subquery(&stmt)
            && let Some(plan) = self.runnable(stmt.clone()).await?
        {
            return self.run_optimized(plan).await;
        }
        let mut fewer = stmt;
        // (If that cannot be planned either, every one is given up.)
        if pgvector::null_catalog_subqueries(&mut fewer, &user_tables, false)
            && let Ok(Some(plan)) = self.runnable(fewer).await
        {
            return self.run_optimized(plan).await;
        }
        self.run_query(all).await
    }

    /// The statement's optimised plan, or `None` if it keeps a scalar subquery that the
    /// physical planner cannot run.
    async fn runnable(
        &self,
        stmt: Statement,
    ) -> Result<Option<datafusion::logical_expr::LogicalPlan>> {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        use datafusion::logical_expr::Expr;
        let plan = self.plan(stmt).await?;
        let optimized = self.ctx.state().optimize(&plan)?;
        let mut subquery = false;
        optimized.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                subquery |= e.exists(|x| Ok(matches!(x, Expr::ScalarSubquery(_))))?;
                Ok(if subquery {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })?;
        Ok((!subquery).then_some(optimized))
    }

    /// Run a plan [`Self::runnable`] optimised (without optimising it again).
    async fn run_optimized(&self, plan: datafusion::logical_expr::LogicalPlan) -> Result<Output> {
        let schema = catalog::result_schema(&plan);
        let state = self.ctx.state();
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await?;
        let stream = datafusion::physical_plan::execute_stream(physical, self.ctx.task_ctx())?;
        Ok(Output::Rows { schema, stream })
    }

    /// Run a prepared statement with its parameter values. A statement with a
    /// [`direct::Direct`] path runs on it; a query planned at Parse binds the values into
    /// that plan (and reuses its physical plan while they and the settings are those of
    /// its previous execution); a search of the shape [`plan_cache::SearchShape`] reuses
    /// the plan of its previous execution when only the query vector changed; everything
    /// else binds the values and plans in full.
    pub async fn execute_prepared(
        &self,
        stmt: &Statement,
        values: &[crate::types::Value],
        direct: Option<&direct::Direct>,
        planned: Option<&params::PreparedPlan>,
        shape: Option<&plan_cache::SearchShape>,
        cache: &plan_cache::PlanCache,
    ) -> Result<Output> {
        // (A locking clause in a subquery was refused at Parse.)
        if matches!(stmt, Statement::Query(q) if !q.locks.is_empty()) {
            // Locks rows: never a shortcut that would only read them.
            return self.execute(params::bind(stmt, values)?).await;
        }
        self.check_block(stmt)?;
        self.engine.core.fresh_catalog().await;
        let fast = self.direct_paths();
        if let Some(d) = direct
            && fast
            && let Some(out) = d.run(self, values).await?
        {
            crate::metrics::global().direct_statements.inc();
            return Ok(out);
        }
        if let Some(p) = planned
            && fast
            && p.generation == self.engine.core.generation()
        {
            // Planned for: the session's settings and every value.
            let key = p.reusable.then(|| self.plan_key(values, None));
            if let Some(key) = &key
                && let Some((plan, schema)) = cache.get(key, p.generation)
            {
                crate::metrics::global().prepared_plans.inc();
                return self.run_kept(plan, schema, None);
            }
            if let Some(plan) = p.bind(values) {
                crate::metrics::global().prepared_plans.inc();
                self.apply_settings();
                let schema = catalog::result_schema(&plan);
                let keep = key.map(|key| (cache, key, p.generation, 0));
                return self.run_and_keep(&plan, schema, keep).await;
            }
        }
        let vector = shape.and_then(|s| values.get(s.vector_param - 1));
        let (Some(shape), Some(vector)) = (shape, vector) else {
            return self.execute(params::bind(stmt, values)?).await;
        };
        if matches!(vector, crate::types::Value::Null) {
            return self.execute(params::bind(stmt, values)?).await;
        }
        // Planned for: the session's settings and every value but the vector's.
        let key = self.plan_key(values, Some(shape.vector_param));
        let generation = self.engine.core.generation();
        if let Some((plan, schema)) = cache.get(&key, generation) {
            // The search checks the dimension against the column it searches.
            let query = vector_search::query_vector(vector.clone(), 0)?;
            return self.run_kept(plan, schema, Some(query));
        }
        let plan = self.plan(params::bind(stmt, values)?).await?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        self.run_and_keep(&plan, schema, Some((cache, key, generation, 1)))
            .await
    }

    /// Plan `plan` physically and run it, offering the physical plan to `keep`'s cache
    /// (with its key, catalog generation and number of searches) for later executions.
    async fn run_and_keep(
        &self,
        plan: &datafusion::logical_expr::LogicalPlan,
        schema: SchemaRef,
        keep: Option<(&plan_cache::PlanCache, String, u64, usize)>,
    ) -> Result<Output> {
        let physical = self.ctx.state().create_physical_plan(plan).await?;
        if let Some((cache, key, generation, searches)) = keep {
            cache.put(key, generation, &physical, schema.clone(), searches);
        }
        let stream = datafusion::physical_plan::execute_stream(physical, self.ctx.task_ctx())?;
        Ok(Output::Rows { schema, stream })
    }

    /// What a kept plan was made for: the session's settings and the values (but the
    /// one at `except`, 1-based).
    fn plan_key(&self, values: &[crate::types::Value], except: Option<usize>) -> String {
        let mut key = self.settings_key();
        for (i, v) in values.iter().enumerate() {
            if Some(i + 1) != except {
                key.push_str(&format!("{v:?}|"));
            }
        }
        key
    }

    /// Run a plan [`plan_cache::PlanCache`] kept, reset (with `query` as its search's
    /// vector, if given).
    fn run_kept(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        schema: SchemaRef,
        query: Option<Vec<f32>>,
    ) -> Result<Output> {
        self.apply_settings();
        let config = self.ctx.state_ref().read().config_options().clone();
        let plan = plan_cache::reset(plan, query, &config)?;
        crate::metrics::global().plan_cache_hits.inc();
        let stream = datafusion::physical_plan::execute_stream(plan, self.ctx.task_ctx())?;
        Ok(Output::Rows { schema, stream })
    }

    async fn run_query(&self, stmt: Statement) -> Result<Output> {
        let plan = self.plan(stmt).await?;
        self.run_plan(plan).await
    }

    /// Optimise and run a logical plan.
    async fn run_plan(&self, plan: datafusion::logical_expr::LogicalPlan) -> Result<Output> {
        let schema = catalog::result_schema(&plan);
        let df = self.ctx.execute_logical_plan(plan).await?;
        let stream = df.execute_stream().await?;
        Ok(Output::Rows { schema, stream })
    }

    pub(crate) async fn plan(
        &self,
        stmt: Statement,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        self.apply_settings();
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| {
                Error::FeatureNotSupported("this statement is not supported by vectorgate".into())
            })?;
        Ok(plan)
    }

    fn apply_settings(&self) {
        let settings = self.search_settings();
        self.ctx
            .state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(settings));
    }

    /// The session's settings for searches (`vectorgate.hnsw_ef`, ...).
    pub(crate) fn search_settings(&self) -> SearchSettings {
        let read_only = self.read_only();
        let s = self.settings.lock();
        SearchSettings {
            hnsw_ef: s.get("vectorgate.hnsw_ef").and_then(|v| v.parse().ok()),
            exact: s
                .get("vectorgate.exact")
                .is_some_and(|v| matches!(v.as_str(), "on" | "true" | "1")),
            row_scan: s
                .get("vectorgate.row_scan")
                .is_some_and(|v| matches!(v.as_str(), "on" | "true" | "1")),
            oversampling: s
                .get("vectorgate.oversampling")
                .and_then(|v| v.parse().ok()),
            rescore: s
                .get("vectorgate.rescore")
                .map(|v| matches!(v.as_str(), "on" | "true" | "1")),
            notices: self.notices.clone(),
            read_only,
        }
    }

    pub(crate) fn set(&self, name: &str, value: Option<String>) {
        let name = name.to_ascii_lowercase();
        {
            let mut s = self.settings.lock();
            match value {
                Some(v) => s.insert(name.clone(), v),
                None => s.remove(&name),
            };
        }
        if name == "search_path" {
            self.follow_search_path();
        }
    }

    pub(crate) fn reset_all(&self) {
        self.settings.lock().clear();
        self.follow_search_path();
    }

    /// `current_schema()`: the first schema on the search path that exists.
    fn follow_search_path(&self) {
        let path = self
            .get("search_path")
            .map(|p| schemas::search_path(&p))
            .unwrap_or_default();
        let first = path
            .iter()
            .find(|s| self.engine.core.has_schema(s))
            .map_or("public", String::as_str);
        self.ctx
            .register_udf(catalog::constant_text("current_schema", first));
    }

    /// The session's `statement_timeout`, if one is set (0 means none).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let Some(v) = self.get("statement_timeout") else {
            return self.options.statement_timeout;
        };
        let ms = statements::parse_duration_ms(&v).ok()?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// Parse `sql` as this session reads it: its unqualified names by its
    /// `search_path`.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let mut stmts = self.engine.parse(sql)?;
        if let Some(path) = self.get("search_path") {
            let path = schemas::search_path(&path);
            for s in &mut stmts {
                schemas::qualify(&self.engine.core, &path, s);
            }
        }
        if sql.contains('*') && row_ids::any(&self.engine.core) {
            for s in &mut stmts {
                row_ids::hide(&self.engine.core, s);
            }
        }
        Ok(stmts)
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("transaction_read_only") && self.tx.read_only() {
            return Some("on".into());
        }
        setting(
            &self.settings.lock(),
            &self.options,
            &name.to_ascii_lowercase(),
        )
    }
}

/// A setting the session has (its SET, or what its options imply), by lower-cased name.
fn setting(
    settings: &BTreeMap<String, String>,
    options: &SessionOptions,
    name: &str,
) -> Option<String> {
    if options.read_only
        && matches!(
            name,
            "transaction_read_only" | "default_transaction_read_only"
        )
    {
        return Some("on".into());
    }
    if name == "statement_timeout"
        && let Some(d) = options.statement_timeout
        && !settings.contains_key(name)
    {
        return Some(d.as_millis().to_string());
    }
    settings.get(name).cloned()
}

/// `sql` (one statement) with `rule` applied, as text: the unit tests of the rewrites.
#[cfg(test)]
pub(crate) fn rewritten(sql: &str, rule: fn(&mut Statement)) -> String {
    use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
    let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .expect("parses")
        .remove(0);
    rule(&mut stmt);
    stmt.to_string()
}

/// A function's result: `out`, or its one value when every argument was a scalar.
pub(crate) fn columnar(
    out: datafusion::arrow::array::ArrayRef,
    scalar: bool,
) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::logical_expr::ColumnarValue;
    Ok(if scalar {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(out)
    })
}
