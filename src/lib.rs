//! vectorgate: a PostgreSQL-wire query proxy for vector search.
//!
//! A map of the modules, from the socket inwards:
//!
//! - [`server`]: accepts connections and runs them until shutdown; opens the stores.
//! - [`wire`]: the Postgres protocol (pgwire): startup, simple and extended query,
//!   parameter decoding, result encoding, SQLSTATEs on the wire.
//! - [`sql`]: the SQL engine: DDL and writes against the stores, queries through Apache
//!   DataFusion, the `vector_search` table function and the pushdown of WHERE
//!   predicates into the vector index.
//! - [`store`]: the [`store::RowStore`] and [`store::VectorIndex`] traits and their
//!   implementations (rows: redb or a CQL cluster; vectors: qdrant-edge in process or a
//!   Qdrant server).
//! - [`sync`]: keeping the vector index in step with the rows (backfill from a scan).
//! - [`health`]: the index's circuit breaker: exact answers from the rows while the
//!   index is away, and its recovery.
//! - [`metrics`]: Prometheus metrics, health endpoints, the slow-query log.
//! - [`types`]: column types and values shared by the engine and the stores.
//! - [`error`]: the one error type and its SQLSTATE table.
//! - [`config`], [`cli`]: settings from flags, `VECTORGATE_*` variables and a TOML file.

pub mod cli;
pub mod config;
pub mod error;
pub mod faults;
pub mod health;
pub mod metrics;
pub mod server;
pub mod sql;
pub mod store;
pub mod sync;
pub mod types;
pub mod wire;
