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

/// The Postgres version clients are told by default, for their feature checks
/// (`server_version`); `--server-version` may name another whose catalogs the proxy answers.
pub const SERVER_VERSION: &str = "16.6";

/// The version this process announces: [`SERVER_VERSION`] unless the server was started
/// with `--server-version` (set once, before the first connection).
static ANNOUNCED: std::sync::OnceLock<(&'static str, &'static str)> = std::sync::OnceLock::new();

/// `version` as `server_version_num` spells it: "15.8" is "150008".
fn version_num(version: &str) -> Option<String> {
    let (major, minor) = version.split_once('.')?;
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    (minor < 100).then(|| format!("{major}{minor:04}"))
}

/// `version`'s `server_version_num` if the proxy can announce it: MAJOR.MINOR with major
/// 15 or 16, the versions whose catalogs it answers.
pub fn check_version(version: &str) -> Result<String, String> {
    version_num(version)
        .filter(|n| n.len() == 6 && (n.starts_with("15") || n.starts_with("16")))
        .ok_or_else(|| {
            format!("server version \"{version}\" is not one the proxy can be: say 15.N or 16.N")
        })
}

/// Announce `version` (see [`check_version`]) from now on. Once per process: a second
/// call naming another version is refused.
pub fn announce_version(version: &str) -> Result<(), String> {
    let num = check_version(version)?;
    let announced = ANNOUNCED.get_or_init(|| {
        (
            Box::leak(version.to_string().into_boxed_str()),
            Box::leak(num.into_boxed_str()),
        )
    });
    if announced.0 == version {
        Ok(())
    } else {
        Err(format!(
            "this process already announces server version {}",
            announced.0
        ))
    }
}

/// The Postgres version clients are told (`server_version`, `version()`).
pub fn server_version() -> &'static str {
    ANNOUNCED.get().map_or(SERVER_VERSION, |v| v.0)
}

/// [`server_version`] as `server_version_num` spells it.
pub fn server_version_num() -> &'static str {
    ANNOUNCED.get().map_or("160006", |v| v.1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn announced_versions_are_15_or_16_with_their_number() {
        assert_eq!(crate::check_version("15.8").as_deref(), Ok("150008"));
        assert_eq!(crate::check_version("16.12").as_deref(), Ok("160012"));
        for refused in ["14.1", "17.0", "15", "15.x", "15.100", "", "16.6.1"] {
            assert!(crate::check_version(refused).is_err(), "{refused}");
        }
    }
}
