//! vectorgate: a PostgreSQL-wire query proxy for vector search.
//!
//! A map of the modules, from the socket inwards. Imports run down this list only
//! (`wire` → `sql` → `engine` → `store`); `src/layers.rs` checks it.
//!
//! - [`server`]: opens the stores, accepts connections and runs them until shutdown.
//! - [`wire`]: the Postgres protocol (pgwire): startup and authentication, simple and
//!   extended query, parameter decoding, result encoding, SQLSTATEs on the wire.
//! - [`sql`]: the SQL layer: parsing and the compatibility rewrites, DataFusion
//!   planning over the engine's tables, the `vector_search` table function and the
//!   pushdown of WHERE predicates into the vector index, the pg_catalog emulation, and
//!   the statements that turn into engine calls (DDL, writes, SET/SHOW, COPY).
//! - [`engine`]: the core below SQL: the catalog of tables, the write protocol (row
//!   store + outbox + vector index), the index's circuit breaker ([`engine::health`])
//!   and the outbox replay, backfill and reindex ([`engine::sync`]).
//! - [`store`]: the [`store::RowStore`] and [`store::VectorIndex`] traits and their
//!   implementations (rows: redb or a CQL cluster; vectors: qdrant-edge in process or a
//!   Qdrant server).
//! - [`types`]: column types and values shared by the engine and the stores.
//! - [`error`]: the one error type and its SQLSTATE table.
//! - [`metrics`]: the process-wide counters and the slow-query log; [`endpoint`]
//!   serves them with `/healthz` and `/readyz`.
//! - [`config`], [`cli`]: settings from flags, `VECTORGATE_*` variables and a TOML file;
//!   [`scram`]: the SCRAM-SHA-256 verifiers users are configured with.
//! - [`faults`]: fault injection for the tests (`VECTORGATE_FAULT_INJECTION=1`).

pub mod cli;
pub mod config;
pub mod databases;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod faults;
pub mod json;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod scram;
pub mod server;
pub mod sql;
pub mod store;
pub mod types;
pub mod wire;

/// The Postgres version clients are told, for their feature checks (`server_version`).
pub const SERVER_VERSION: &str = "16.6";
/// [`SERVER_VERSION`] as `server_version_num` spells it.
pub const SERVER_VERSION_NUM: &str = "160006";
