//! The Postgres wire protocol (pgwire): startup, the simple and the extended query
//! protocol, cancel. Statements go to a per-connection [`Session`]; results come back as
//! Arrow batches and are encoded by [`encode`]; parameters are decoded by [`params`].
//! This layer sees neither Scylla nor Qdrant types.

pub mod arrays;
pub mod auth;
pub mod conn;
pub mod encode;
pub mod params;
pub mod parse_cache;
pub mod tls;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireConnectionState,
    PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{Execute, Sync as PgSync};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;

use crate::config::Front;
use crate::error::Error;
use crate::sql::params::{Described, describe};
use crate::sql::{BlockStatus, Engine, Session, SessionOptions};
use auth::Startup;
use datafusion::sql::sqlparser::ast::Statement;

/// A statement prepared by Parse: the parsed tree and what Describe reports.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub stmt: Statement,
    pub described: Described,
    /// Parameter types the client declared at Parse (by OID), if any.
    pub client_types: Vec<Option<Type>>,
    /// The SQL text (for the slow-query log) and the statement's kind (for metrics).
    pub sql: Arc<str>,
    pub kind: &'static str,
    /// The statement's direct path, if it has one.
    pub direct: Option<Arc<crate::sql::direct::Direct>>,
    /// A search whose plan is reused between executions, and that plan.
    pub shape: Option<crate::sql::plan_cache::SearchShape>,
    pub plan: Arc<crate::sql::plan_cache::PlanCache>,
}

pub struct Handlers {
    databases: Arc<crate::databases::Databases>,
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

/// The statement-level limits and logging settings of the front door.
#[derive(Debug, Clone)]
pub struct StatementLimits {
    pub max_query_length: usize,
    pub max_result_rows: u64,
    pub max_result_bytes: u64,
    pub max_copy_bytes: Option<usize>,
    pub statement_timeout: Option<std::time::Duration>,
    pub slow_query: Option<std::time::Duration>,
}

impl StatementLimits {
    pub fn from_front(front: &Front) -> StatementLimits {
        StatementLimits {
            max_query_length: front.max_query_length,
            max_result_rows: front.max_result_rows,
            max_result_bytes: front.max_result_bytes,
            max_copy_bytes: front.max_copy_bytes,
            statement_timeout: front.statement_timeout,
            slow_query: front.slow_query,
        }
    }

    fn check_length(&self, sql: &str) -> Result<(), Error> {
        if sql.len() > self.max_query_length {
            return Err(Error::ProgramLimit(format!(
                "statement of {} bytes is longer than the limit of {} bytes (max_query_length)",
                sql.len(),
                self.max_query_length
            )));
        }
        Ok(())
    }
}

impl Handlers {
    pub fn new(databases: Arc<crate::databases::Databases>, front: &Front) -> Handlers {
        let connections = Arc::new(ConnectionManager::new());
        Handlers {
            query: Arc::new(QueryHandler {
                parser: Arc::new(StatementParser {
                    engine: databases.default_engine().clone(),
                    limits: StatementLimits::from_front(front),
                }),
            }),
            startup: Arc::new(Startup::new(front, connections.clone(), databases.clone())),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
            databases,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        self.databases.default_engine()
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.query.clone()
    }
}

#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.parser.session(client);
        // Out of the session while it parses and writes (a connection's messages come
        // one at a time, so nothing else wants it meanwhile).
        let copy = session.copy.lock().take();
        if let Some(mut copy) = copy {
            copy.push(&session, &copy_data.data, self.parser.limits.max_copy_bytes)
                .await;
            *session.copy.lock() = Some(copy);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let session = self.parser.session(client);
        let copy = session.copy.lock().take();
        let Some(copy) = copy else {
            return Err(to_pgwire(Error::ProtocolViolation(
                "COPY data without a COPY in progress".into(),
            )));
        };
        let n = copy.finish(&session).await.map_err(|e| {
            session.statement_failed();
            to_pgwire(e)
        })?;
        client.set_transaction_status(block_status(&session));
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(n).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.parser.session(client);
        let copy = session.copy.lock().take();
        session.statement_failed();
        let e = Error::QueryCanceled(format!("COPY from stdin failed: {}", fail.message));
        to_pgwire(match copy {
            Some(copy) => copy.abandon(&session, e).await,
            None => e,
        })
    }
}

/// COPY TO STDOUT's messages, as Postgres sends them: CopyOutResponse, a CopyData per
/// row, CopyDone and `COPY n`. (pgwire's own sender counts messages as rows and answers
/// an error with a frontend message.) An error part-way ends it with the ErrorResponse.
async fn send_copy_out<C>(
    client: &mut C,
    copy: pgwire::api::results::CopyResponse,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::{SinkExt, StreamExt};
    use pgwire::messages::copy::{CopyDone, CopyOutResponse};
    let mut copy = copy;
    let (formats, format, columns) = (copy.column_formats(), copy.format, copy.columns);
    let data_stream = copy.data_stream();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format,
            columns as i16,
            formats,
        )))
        .await?;
    let mut rows = 0usize;
    while let Some(data) = data_stream.next().await {
        let data = data?;
        if data.data.is_empty() {
            // The message before was a head without a row (see encode::copy_out).
            rows = rows.saturating_sub(1);
            continue;
        }
        if data.data.as_ref() != [0xff, 0xff] {
            rows += 1;
        }
        client.feed(PgWireBackendMessage::CopyData(data)).await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    client
        .send(PgWireBackendMessage::CommandComplete(
            Tag::new("COPY").with_rows(rows).into(),
        ))
        .await?;
    Ok(())
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        tracing::debug!(%error, "statement failed");
    }
}

/// The client-facing form of an error.
pub fn error_info(e: &Error) -> pgwire::error::ErrorInfo {
    if let Error::Internal(detail) = e {
        tracing::error!(%detail, "internal error");
    }
    let mut info =
        pgwire::error::ErrorInfo::new("ERROR".into(), e.sqlstate().into(), e.to_string());
    info.detail = e.detail();
    info.hint = e.hint();
    info.where_context = e.context();
    if let Some((table, constraint)) = e.constraint() {
        // A table outside `public` is named `schema.table` in the catalog.
        let (schema, table) = table.split_once('.').unwrap_or(("public", table));
        info.schema = Some(schema.into());
        info.table = Some(table.into());
        info.constraint = Some(constraint.into());
    }
    info
}

pub fn to_pgwire(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

impl StatementParser {
    /// The connection's session, made on first use with the user's rights.
    fn session<C: ClientInfo + ?Sized>(&self, client: &C) -> Arc<Session> {
        if let Some(session) = client.session_extensions().get::<Session>() {
            return session;
        }
        // The database the startup packet named (see auth::Startup::accept).
        let chosen = client.session_extensions().get::<auth::Database>();
        client.session_extensions().get_or_insert_with(|| {
            Session::with_options(
                chosen
                    .as_ref()
                    .map_or_else(|| self.engine.clone(), |d| d.engine.clone()),
                SessionOptions {
                    database: chosen.as_ref().and_then(|d| d.name.clone()),
                    read_only: client
                        .metadata()
                        .get(auth::METADATA_READ_ONLY)
                        .is_some_and(|v| v == "on"),
                    statement_timeout: self.limits.statement_timeout,
                    user: client.metadata().get(pgwire::api::METADATA_USER).cloned(),
                    pid: client.pid_and_secret_key().0,
                },
            )
        })
    }

    /// Count a finished statement and log it when slow.
    fn observe<T>(
        &self,
        kind: &'static str,
        sql: &str,
        started: std::time::Instant,
        result: &Result<T, Error>,
    ) {
        let elapsed = started.elapsed();
        let metrics = crate::metrics::global();
        let outcome = match result {
            Ok(_) => "ok",
            Err(Error::QueryCanceled(_)) => "canceled",
            Err(e) => {
                if let Error::Backend { store, .. }
                | Error::Unavailable { store, .. }
                | Error::Timeout { store, .. } = e
                {
                    metrics.backend_error(store, e.sqlstate());
                }
                "error"
            }
        };
        metrics.query(kind, outcome, elapsed);
        if let Some(limit) = self.limits.slow_query
            && elapsed >= limit
        {
            metrics.slow_queries.inc();
            let mut text: String = sql.chars().take(2000).collect();
            if text.len() < sql.len() {
                text.push_str("...");
            }
            tracing::warn!(
                target: "vectorgate::slow_query",
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                kind,
                outcome,
                sql = %text,
                "slow statement"
            );
        }
    }
}

/// What a statement is, for the metrics.
fn kind_of(stmt: &Statement, sql: &str) -> &'static str {
    match stmt {
        Statement::Query(_) => {
            let lower = sql.to_ascii_lowercase();
            if lower.contains("vector_search")
                || lower.contains("<->")
                || lower.contains("<=>")
                || lower.contains("<#>")
            {
                "search"
            } else {
                "select"
            }
        }
        Statement::Insert(_) => "insert",
        Statement::Update(_) => "update",
        Statement::Delete(_) => "delete",
        Statement::Copy { .. } => "copy",
        Statement::Explain { .. } => "explain",
        Statement::CreateTable(_)
        | Statement::AlterTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateExtension(_)
        | Statement::Drop { .. }
        | Statement::Truncate(_) => "ddl",
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::Reset(_)
        | Statement::Discard { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::Deallocate { .. } => "session",
        _ => "other",
    }
}

/// Run a statement under the session's `statement_timeout` (57014 when it passes).
async fn with_timeout<T>(
    session: &Session,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let done = match session.statement_timeout() {
        None => work.await,
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::QueryCanceled(
                "canceling statement due to statement timeout".into(),
            )),
        },
    };
    // A statement cancelled before its end still gives back its row locks.
    session.row_locks_ended();
    done
}

/// Send the NOTICEs a statement left (for example: answered by the exact fallback).
async fn send_notices<C>(client: &mut C, session: &Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::SinkExt;
    for n in session.notices.take() {
        let info = pgwire::error::ErrorInfo::new(n.severity.into(), n.code.into(), n.message);
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
    }
    Ok(())
}

pub struct StatementParser {
    engine: Arc<Engine>,
    limits: StatementLimits,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = self.session(client);
        // A statement that fails at Parse fails the transaction block, as at Execute.
        let failed = |e: Error| {
            session.statement_failed();
            to_pgwire(e)
        };
        self.limits.check_length(sql).map_err(failed)?;
        session.engine().core().fresh_catalog().await;
        let parsed = client
            .session_extensions()
            .get_or_insert_with(parse_cache::ParseCache::default);
        let key = parse_cache::ParseCache::key(&session, sql, types);
        if let Some(prepared) = parsed.get(&key) {
            return Ok(Some(prepared));
        }
        let mut stmts = session.parse(sql).map_err(failed)?;
        if stmts.len() > 1 {
            return Err(failed(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            )));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        // Checked once here rather than at every Execute.
        crate::sql::for_update::refuse_nested(&stmt).map_err(failed)?;
        let mut described = describe(&session, &stmt).await.map_err(failed)?;
        let core = session.engine().core();
        let column_type = |tables: &[String], column: &str| core.vector_column_type(tables, column);
        let mentions = |lower: &str| core.mentions_vector_column(lower);
        for (i, kind) in crate::sql::params::pgvector_operands(sql, &column_type, &mentions) {
            if let Some(slot) = described.params.get_mut(i - 1) {
                *slot = Some(crate::sql::params::pgvector_param(i, kind));
            }
        }
        let kind = kind_of(&stmt, sql);
        let direct = crate::sql::direct::recognize(
            &stmt,
            session.engine().core(),
            described.schema.as_ref(),
        )
        .map(Arc::new);
        let prepared = Prepared {
            direct,
            shape: crate::sql::plan_cache::search_shape(&stmt),
            plan: Default::default(),
            stmt,
            described,
            client_types: types.to_vec(),
            sql: sql.into(),
            kind,
        };
        parsed.put(key, &prepared);
        Ok(Some(prepared))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt
            .described
            .params
            .iter()
            .map(|t| params::pg_param_type(t.as_ref()))
            .collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.described.schema {
            Some(schema) => encode::fields(schema, column_format.unwrap_or(&Format::UnifiedText)),
            None => Ok(vec![]),
        }
    }
}

pub struct QueryHandler {
    parser: Arc<StatementParser>,
}

impl QueryHandler {
    /// A statement panicked: the client gets XX000 with the panic's message, a block the
    /// session was in fails (its writes are never committed), and the connection goes on.
    pub(crate) fn panicked<C: ClientInfo>(&self, client: &mut C, message: &str) -> PgWireError {
        let session = self.parser.session(client);
        session.statement_failed();
        client.set_transaction_status(block_status(&session));
        tracing::error!(panic = message, "a statement panicked; the session goes on");
        to_pgwire(Error::internal(message))
    }
}

/// What ReadyForQuery reports for a session: idle, in a block, or in a failed one.
fn block_status(session: &Session) -> TransactionStatus {
    match session.block_status() {
        BlockStatus::Idle => TransactionStatus::Idle,
        BlockStatus::InBlock => TransactionStatus::Transaction,
        BlockStatus::Failed => TransactionStatus::Error,
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    /// A query string, answered as pgwire's default does except that ReadyForQuery
    /// reports the session's own block status: a `ROLLBACK TO SAVEPOINT` revives a failed
    /// block, and a `COMMIT` that fails leaves none.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::api::query::{send_execution_response, send_query_response};
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let session = self.parser.session(client);
        if query.query.chars().all(|c| c == ';' || c.is_whitespace()) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            let cancel = match client
                .session_extensions()
                .get::<Arc<pgwire::api::ConnectionHandle>>()
            {
                Some(h) => Some(h.start_query().await),
                None => None,
            };
            let run = SimpleQueryHandler::do_query(self, client, &query.query);
            let responses = match cancel {
                Some(rx) => match futures::future::select(run, rx).await {
                    futures::future::Either::Left((r, _)) => r,
                    futures::future::Either::Right(_) => Err(PgWireError::QueryCanceled),
                },
                None => run.await,
            };
            let mut responses = responses.inspect_err(|_| session.statement_failed())?;
            // A string of comments holds no statement: Postgres answers EmptyQueryResponse
            // (pg_restore sends a dump's header comment alone and expects it).
            if responses.is_empty() {
                responses.push(Response::EmptyQuery);
            }
            // The string stops at its first error, which fails an open block.
            if responses.iter().any(|r| matches!(r, Response::Error(_))) {
                session.statement_failed();
            }
            for r in responses {
                match r {
                    Response::EmptyQuery => {
                        client
                            .feed(PgWireBackendMessage::EmptyQueryResponse(
                                EmptyQueryResponse::new(),
                            ))
                            .await?
                    }
                    Response::Query(rows) => send_query_response(client, rows, true).await?,
                    Response::Execution(tag)
                    | Response::TransactionStart(tag)
                    | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                    Response::Error(e) => {
                        client
                            .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                            .await?
                    }
                    Response::CopyIn(copy) => {
                        pgwire::api::copy::send_copy_in_response(client, copy).await?;
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                    }
                    Response::CopyOut(copy) => send_copy_out(client, copy)
                        .await
                        .inspect_err(|_| session.statement_failed())?,
                    Response::CopyBoth(copy) => {
                        pgwire::api::copy::send_copy_both_response(client, copy).await?;
                        client.set_state(PgWireConnectionState::CopyInProgress(false));
                    }
                }
            }
        }
        let status = block_status(&session);
        client.set_transaction_status(status);
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client
                .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                    status,
                )))
                .await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parser = &self.parser;
        let session = parser.session(client);
        session.statement_began();
        session.engine().core().fresh_catalog().await;
        let stmts = match parser
            .limits
            .check_length(query)
            .and_then(|()| session.parse(query))
        {
            Ok(s) => s,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(&e)))]),
        };
        // Like Postgres, a string of several statements outside a block is one implicit
        // transaction: all of its writes, or none if one of them fails. (Strings with
        // transaction or table statements run statement by statement.)
        let implicit = stmts.len() > 1
            && !session.tx.active()
            && stmts.iter().all(|s| {
                matches!(
                    s,
                    Statement::Insert(_)
                        | Statement::Update(_)
                        | Statement::Delete(_)
                        | Statement::Query(_)
                )
            });
        if implicit {
            session.tx.begin(false);
        }
        let mut out = Vec::with_capacity(stmts.len());
        for stmt in stmts {
            let kind = kind_of(&stmt, query);
            let started = std::time::Instant::now();
            let resp = with_timeout(&session, async {
                let resp = match session.execute(stmt).await {
                    Ok(o) => encode::response(o, &Format::UnifiedText, &parser.limits).await,
                    Err(e) => Err(e),
                };
                // The first rows are out: a lock function in them has run.
                session.statement_ended().await;
                resp
            })
            .await;
            parser.observe(kind, query, started, &resp);
            send_notices(client, &session).await?;
            match resp {
                Ok(r) => out.push(r),
                Err(e) => {
                    // Like Postgres, the first failing statement ends the query string.
                    out.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        let ended = if implicit { session.tx.take() } else { None };
        if let Some(tx) = ended {
            if tx.failed() || matches!(out.last(), Some(Response::Error(_))) {
                tx.abandon(session.engine().core()).await;
                session.statement_ended().await;
                return Ok(out);
            }
            let committed =
                crate::engine::write::commit_block(session.engine().core(), tx, &session.notices)
                    .await;
            session.statement_ended().await;
            send_notices(client, &session).await?;
            if let Err(e) = committed {
                out.push(Response::Error(Box::new(error_info(&e))));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    /// An Execute: a failure fails the session's block (ReadyForQuery comes at Sync).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.parser.session(client);
        let done = self._on_execute(client, message).await;
        if done.is_err() {
            session.statement_failed();
        }
        client.set_transaction_status(block_status(&session));
        done
    }

    /// A Sync: ReadyForQuery with the session's block status.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        client.portal_store().rm_portal("");
        let status = block_status(&self.parser.session(client));
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parser = &self.parser;
        let session = parser.session(client);
        session.statement_began();
        let prepared = &portal.statement.statement;
        let started = std::time::Instant::now();
        let run = async {
            let values = params::decode(portal)?;
            let out = session
                .execute_prepared(
                    &prepared.stmt,
                    &values,
                    prepared.direct.as_deref(),
                    prepared.described.plan.as_deref(),
                    prepared.shape.as_ref(),
                    &prepared.plan,
                )
                .await?;
            let resp = encode::response(out, &portal.result_column_format, &parser.limits).await;
            session.statement_ended().await;
            resp
        };
        let response = with_timeout(&session, run).await;
        parser.observe(prepared.kind, &prepared.sql, started, &response);
        send_notices(client, &session).await?;
        response.map_err(to_pgwire)
    }
}
