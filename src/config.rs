//! Settings: command-line flags win over `VECTORGATE_*` environment variables, which win
//! over the TOML file given with `--config`, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;

use crate::store::qdrant_index::QdrantSettings;
use crate::store::scylla_rows::{Replication, ScyllaConfig};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
pub const DEFAULT_DATA: &str = "./vectorgate-data";
pub const DEFAULT_MAX_K: usize = 10_000;

/// The settings file, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub max_k: Option<usize>,
    pub scylla: Option<String>,
    pub keyspace: Option<String>,
    pub scylla_user: Option<String>,
    pub scylla_password: Option<String>,
    pub scylla_replication: Option<String>,
    pub scylla_timeout_ms: Option<u64>,
    pub qdrant: Option<String>,
    pub qdrant_api_key: Option<String>,
    pub qdrant_collection_prefix: Option<String>,
    pub qdrant_timeout_ms: Option<u64>,
    pub fallback_max_rows: Option<usize>,
    pub max_connections: Option<usize>,
}

/// Where vectors live.
#[derive(Debug, Clone)]
pub enum VectorBackend {
    /// qdrant-edge in process, under `<data>/vectors`.
    Embedded,
    Qdrant(QdrantSettings),
}

/// Vector-index settings as given (flag or environment), before the file fills in.
#[derive(Debug, Default, Clone)]
pub struct VectorArgs {
    pub qdrant: Option<String>,
    pub api_key: Option<String>,
    pub collection_prefix: Option<String>,
    pub timeout_ms: Option<u64>,
    pub fallback_max_rows: Option<usize>,
}

pub const DEFAULT_FALLBACK_MAX_ROWS: usize = 1_000_000;

/// Where rows live.
#[derive(Debug, Clone)]
pub enum RowBackend {
    Embedded,
    Scylla(ScyllaConfig),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub max_k: usize,
    pub rows: RowBackend,
    pub vectors: VectorBackend,
    /// Most rows an exact fallback scan reads before refusing (53000).
    pub fallback_max_rows: usize,
    /// Most client connections at once; more are refused with 53300.
    pub max_connections: usize,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// Row-store settings as given (flag or environment), before the file fills in.
#[derive(Debug, Default, Clone)]
pub struct RowArgs {
    pub scylla: Option<String>,
    pub keyspace: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub replication: Option<String>,
    pub timeout_ms: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

impl Config {
    /// Merge flag-or-environment values (already resolved by clap) over the file.
    pub fn resolve(
        listen: Option<String>,
        data: Option<PathBuf>,
        max_k: Option<usize>,
        rows: RowArgs,
        vectors: VectorArgs,
        file: FileConfig,
    ) -> anyhow::Result<Config> {
        let rows_backend = match rows.scylla.or(file.scylla) {
            None => RowBackend::Embedded,
            Some(hosts) => {
                let hosts: Vec<String> = hosts
                    .split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect();
                if hosts.is_empty() {
                    anyhow::bail!("--scylla needs at least one host:port");
                }
                let replication = rows
                    .replication
                    .or(file.scylla_replication)
                    .unwrap_or_else(|| "1".into());
                RowBackend::Scylla(ScyllaConfig {
                    hosts,
                    keyspace: rows
                        .keyspace
                        .or(file.keyspace)
                        .unwrap_or_else(|| "vectorgate".into()),
                    user: rows.user.or(file.scylla_user),
                    password: rows.password.or(file.scylla_password),
                    replication: Replication::parse(&replication)
                        .map_err(|e| anyhow::anyhow!("--scylla-replication: {e}"))?,
                    timeout: Duration::from_millis(
                        rows.timeout_ms.or(file.scylla_timeout_ms).unwrap_or(10_000),
                    ),
                })
            }
        };
        let listen = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            anyhow::anyhow!("invalid listen address \"{listen}\": expected ADDR:PORT")
        })?;
        let max_k = max_k.or(file.max_k).unwrap_or(DEFAULT_MAX_K);
        if max_k == 0 {
            anyhow::bail!("max_k must be at least 1");
        }
        let keyspace = match &rows_backend {
            RowBackend::Scylla(c) => c.keyspace.clone(),
            RowBackend::Embedded => "vectorgate".into(),
        };
        let vectors_backend = match vectors.qdrant.or(file.qdrant) {
            None => VectorBackend::Embedded,
            Some(url) => VectorBackend::Qdrant(QdrantSettings {
                url,
                api_key: vectors.api_key.or(file.qdrant_api_key),
                collection_prefix: vectors
                    .collection_prefix
                    .or(file.qdrant_collection_prefix)
                    .unwrap_or_else(|| format!("{keyspace}_")),
                timeout: Duration::from_millis(
                    vectors
                        .timeout_ms
                        .or(file.qdrant_timeout_ms)
                        .unwrap_or(5_000),
                ),
            }),
        };
        Ok(Config {
            listen,
            data: data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            max_k,
            rows: rows_backend,
            vectors: vectors_backend,
            fallback_max_rows: vectors
                .fallback_max_rows
                .or(file.fallback_max_rows)
                .unwrap_or(DEFAULT_FALLBACK_MAX_ROWS),
            max_connections: file.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_in() {
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:7000\"\nmax_k = 50\n").expect("toml");
        let c = Config::resolve(
            None,
            Some("/tmp/x".into()),
            None,
            RowArgs::default(),
            VectorArgs::default(),
            file,
        )
        .expect("config");
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.max_k, 50);
        assert_eq!(c.data, PathBuf::from("/tmp/x"));
        let c = Config::resolve(
            Some("0.0.0.0:1".into()),
            None,
            None,
            RowArgs::default(),
            VectorArgs::default(),
            FileConfig::default(),
        )
        .expect("config");
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.data, PathBuf::from(DEFAULT_DATA));
        assert!(
            Config::resolve(
                Some("nope".into()),
                None,
                None,
                RowArgs::default(),
                VectorArgs::default(),
                FileConfig::default()
            )
            .is_err()
        );
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
        let file: FileConfig =
            toml::from_str("scylla = \"a:9042, b:9042\"\nscylla_replication = \"dc1:3,dc2:2\"\n")
                .expect("toml");
        let c = Config::resolve(
            None,
            None,
            None,
            RowArgs {
                keyspace: Some("ks".into()),
                ..Default::default()
            },
            VectorArgs {
                qdrant: Some("http://q:6334".into()),
                ..Default::default()
            },
            file,
        )
        .expect("config");
        match &c.vectors {
            VectorBackend::Qdrant(q) => {
                assert_eq!(q.url, "http://q:6334");
                // Collections are named after the keyspace unless told otherwise.
                assert_eq!(q.collection_prefix, "ks_");
            }
            other => panic!("expected Qdrant, got {other:?}"),
        }
        match c.rows {
            RowBackend::Scylla(s) => {
                assert_eq!(s.hosts, vec!["a:9042".to_string(), "b:9042".to_string()]);
                assert_eq!(s.keyspace, "ks");
                assert!(matches!(s.replication, Replication::Network(ref d) if d.len() == 2));
            }
            RowBackend::Embedded => panic!("expected the CQL row store"),
        }
    }
}
