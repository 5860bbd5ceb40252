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
    pub max_transaction_rows: Option<usize>,
    /// Who may connect: `[[users]]` tables (name, SCRAM verifier, read_only).
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// TLS, authentication, limits and operations (the same names as the flags).
    #[serde(flatten)]
    pub front: FrontArgs,
    /// Anything else is a mistake worth reporting (serde's deny_unknown_fields does not
    /// combine with flatten).
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
}

/// One user of the proxy, from the settings file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// A SCRAM-SHA-256 verifier (`vectorgate password` prints one); never the password.
    pub password: String,
    /// Refuse every write (SQLSTATE 25006).
    #[serde(default)]
    pub read_only: bool,
}

/// The front door's settings as flags, environment variables or file keys.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(default)]
pub struct FrontArgs {
    /// PEM certificate chain for TLS (reloaded on SIGHUP)
    #[arg(long, env = "VECTORGATE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (reloaded on SIGHUP)
    #[arg(long, env = "VECTORGATE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Refuse connections that do not use TLS (SQLSTATE 28000)
    #[arg(long, env = "VECTORGATE_TLS_REQUIRED", num_args = 0..=1, default_missing_value = "true")]
    pub tls_required: Option<bool>,
    /// trust, scram-sha-256 or password (cleartext, only over TLS) [default: scram-sha-256 when users are configured, else trust on loopback]
    #[arg(long, env = "VECTORGATE_AUTH")]
    pub auth: Option<String>,
    /// Serve Prometheus metrics, /healthz and /readyz over HTTP on this address
    #[arg(long, env = "VECTORGATE_METRICS", value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Log format on stderr: text or json [default: text]
    #[arg(long, env = "VECTORGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log statements slower than this, in milliseconds (0: off) [default: 1000]
    #[arg(long, env = "VECTORGATE_SLOW_QUERY_MS")]
    pub slow_query_ms: Option<u64>,
    /// Close sessions idle for longer, in milliseconds (0: never) [default: 0]
    #[arg(long, env = "VECTORGATE_IDLE_SESSION_TIMEOUT_MS")]
    pub idle_session_timeout_ms: Option<u64>,
    /// Cancel statements running for longer, in milliseconds (0: never; SET statement_timeout overrides) [default: 0]
    #[arg(long, env = "VECTORGATE_STATEMENT_TIMEOUT_MS")]
    pub statement_timeout_ms: Option<u64>,
    /// Longest SQL text accepted, in bytes (SQLSTATE 54000) [default: 1048576]
    #[arg(long, env = "VECTORGATE_MAX_QUERY_LENGTH")]
    pub max_query_length: Option<usize>,
    /// Largest protocol message accepted, in bytes (08P01, then the connection closes) [default: 67108864]
    #[arg(long, env = "VECTORGATE_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Most rows one result may carry (54000) [default: 10000000]
    #[arg(long, env = "VECTORGATE_MAX_RESULT_ROWS")]
    pub max_result_rows: Option<u64>,
    /// Most bytes one result may carry (54000) [default: 1073741824]
    #[arg(long, env = "VECTORGATE_MAX_RESULT_BYTES")]
    pub max_result_bytes: Option<u64>,
    /// Most bytes one COPY FROM STDIN may send (54000; rows before the limit stay written outside a transaction block) [default: no limit; COPY streams]
    #[arg(long, env = "VECTORGATE_MAX_COPY_BYTES")]
    pub max_copy_bytes: Option<usize>,
    /// The embedded row store's page cache, in bytes (most of the proxy's memory beyond the vector index) [default: 1073741824]
    #[arg(long, env = "VECTORGATE_EMBEDDED_CACHE_BYTES")]
    pub embedded_cache_bytes: Option<usize>,
    /// On SIGTERM/SIGINT, how long running statements may take to finish, in milliseconds [default: 30000]
    #[arg(long, env = "VECTORGATE_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// The PostgreSQL version announced to clients, 15.N or 16.N (for tools that refuse a newer server, such as pg_dump 15) [default: 16.6]
    #[arg(long, env = "VECTORGATE_SERVER_VERSION", value_name = "VERSION")]
    pub server_version: Option<String>,
}

impl FrontArgs {
    /// Each value given here wins over `file`'s.
    pub fn or(self, file: FrontArgs) -> FrontArgs {
        FrontArgs {
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_required: self.tls_required.or(file.tls_required),
            auth: self.auth.or(file.auth),
            metrics: self.metrics.or(file.metrics),
            log_format: self.log_format.or(file.log_format),
            slow_query_ms: self.slow_query_ms.or(file.slow_query_ms),
            idle_session_timeout_ms: self
                .idle_session_timeout_ms
                .or(file.idle_session_timeout_ms),
            statement_timeout_ms: self.statement_timeout_ms.or(file.statement_timeout_ms),
            max_query_length: self.max_query_length.or(file.max_query_length),
            max_message_size: self.max_message_size.or(file.max_message_size),
            max_result_rows: self.max_result_rows.or(file.max_result_rows),
            max_result_bytes: self.max_result_bytes.or(file.max_result_bytes),
            max_copy_bytes: self.max_copy_bytes.or(file.max_copy_bytes),
            embedded_cache_bytes: self.embedded_cache_bytes.or(file.embedded_cache_bytes),
            shutdown_timeout_ms: self.shutdown_timeout_ms.or(file.shutdown_timeout_ms),
            server_version: self.server_version.or(file.server_version),
        }
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Anyone who can connect is let in (the default on loopback without users).
    Trust,
    /// SCRAM-SHA-256 against the users' verifiers.
    Scram,
    /// Cleartext password (checked against the same verifiers), only over TLS.
    Password,
}

/// The front door, resolved: TLS, who may connect, limits, operations.
#[derive(Debug, Clone)]
pub struct Front {
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_required: bool,
    pub auth: AuthMethod,
    pub users: Vec<UserEntry>,
    pub metrics: Option<SocketAddr>,
    pub log_json: bool,
    pub slow_query: Option<Duration>,
    pub idle_session_timeout: Option<Duration>,
    pub statement_timeout: Option<Duration>,
    pub max_query_length: usize,
    pub max_message_size: usize,
    pub max_result_rows: u64,
    pub max_result_bytes: u64,
    pub max_copy_bytes: Option<usize>,
    pub embedded_cache_bytes: usize,
    pub shutdown_timeout: Duration,
    /// What `server_version` says, if not [`crate::SERVER_VERSION`].
    pub server_version: Option<String>,
}

impl Default for Front {
    fn default() -> Front {
        Front::resolve(
            FrontArgs::default(),
            Vec::new(),
            DEFAULT_LISTEN.parse().ok(),
        )
        .expect("the defaults are valid")
    }
}

fn millis(ms: Option<u64>) -> Option<Duration> {
    ms.filter(|&m| m > 0).map(Duration::from_millis)
}

impl Front {
    /// Check and settle the front-door settings for a server listening on `listen`.
    pub fn resolve(
        a: FrontArgs,
        users: Vec<UserEntry>,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Front> {
        for u in &users {
            crate::scram::Verifier::parse(&u.password).map_err(|e| {
                anyhow::anyhow!(
                    "user \"{}\": {e} (the password must be a SCRAM-SHA-256 verifier; `vectorgate password` prints one)",
                    u.name
                )
            })?;
        }
        let auth = match a.auth.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None if users.is_empty() => AuthMethod::Trust,
            None | Some("scram-sha-256" | "scram") => AuthMethod::Scram,
            Some("trust") => AuthMethod::Trust,
            Some("password") => AuthMethod::Password,
            Some(other) => anyhow::bail!(
                "unknown auth method \"{other}\": use trust, scram-sha-256 or password"
            ),
        };
        if auth != AuthMethod::Trust && users.is_empty() {
            anyhow::bail!(
                "auth is {auth:?} but no users are configured: add [[users]] entries to the config file"
            );
        }
        if auth == AuthMethod::Trust
            && a.auth.is_none()
            && let Some(addr) = listen
            && !addr.ip().is_loopback()
        {
            anyhow::bail!(
                "refusing to listen on {addr} without authentication: add [[users]] to the config file \
                 (`vectorgate password` prints a verifier), listen on 127.0.0.1, \
                 or say --auth trust to accept anyone who can reach the port"
            );
        }
        let (tls_cert, tls_key) = (a.tls_cert, a.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            anyhow::bail!("TLS needs both --tls-cert and --tls-key");
        }
        let tls_required = a.tls_required.unwrap_or(false);
        if tls_required && tls_cert.is_none() {
            anyhow::bail!("--tls-required needs --tls-cert and --tls-key");
        }
        let metrics = match a.metrics {
            None => None,
            Some(m) => Some(m.parse().map_err(|_| {
                anyhow::anyhow!("invalid metrics address \"{m}\": expected ADDR:PORT")
            })?),
        };
        let log_json = match a.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => anyhow::bail!("unknown log format \"{other}\": use text or json"),
        };
        if let Some(version) = &a.server_version {
            crate::check_version(version).map_err(|e| anyhow::anyhow!(e))?;
        }
        let max_query_length = a.max_query_length.unwrap_or(1 << 20);
        let max_message_size = a.max_message_size.unwrap_or(64 << 20);
        if max_query_length == 0 || max_message_size < 1024 {
            anyhow::bail!("max_query_length must be positive and max_message_size at least 1024");
        }
        Ok(Front {
            tls_cert,
            tls_key,
            tls_required,
            auth,
            users,
            metrics,
            log_json,
            slow_query: millis(Some(a.slow_query_ms.unwrap_or(1000))),
            idle_session_timeout: millis(a.idle_session_timeout_ms),
            statement_timeout: millis(a.statement_timeout_ms),
            max_query_length,
            max_message_size,
            max_result_rows: a.max_result_rows.unwrap_or(10_000_000).max(1),
            max_result_bytes: a.max_result_bytes.unwrap_or(1 << 30).max(1),
            max_copy_bytes: a.max_copy_bytes.filter(|n| *n > 0),
            embedded_cache_bytes: a
                .embedded_cache_bytes
                .unwrap_or(crate::store::embedded_rows::EmbeddedRows::DEFAULT_CACHE_BYTES),
            shutdown_timeout: Duration::from_millis(a.shutdown_timeout_ms.unwrap_or(30_000)),
            server_version: a.server_version,
        })
    }
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
    /// Most rows one transaction block may change (54000 beyond).
    pub max_transaction_rows: usize,
    /// TLS, authentication, limits, operations.
    pub front: Front,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
pub const DEFAULT_MAX_TRANSACTION_ROWS: usize = 100_000;

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
        let file: FileConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        file.check()
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        Ok(file)
    }

    /// Report keys the file has that no setting takes.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.unknown.keys().next() {
            Some(k) => anyhow::bail!("unknown setting \"{k}\""),
            None => Ok(()),
        }
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
            max_transaction_rows: file
                .max_transaction_rows
                .unwrap_or(DEFAULT_MAX_TRANSACTION_ROWS),
            front: Front::resolve(file.front, file.users, Some(listen))?,
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
        // Not on loopback: only with authentication, or trust said out loud.
        let open = |file: FileConfig| {
            Config::resolve(
                Some("0.0.0.0:1".into()),
                None,
                None,
                RowArgs::default(),
                VectorArgs::default(),
                file,
            )
        };
        let refused = open(FileConfig::default()).expect_err("no auth on 0.0.0.0");
        assert!(refused.to_string().contains("without authentication"));
        let c = open(toml::from_str("auth = \"trust\"").expect("toml")).expect("config");
        assert_eq!(c.front.auth, AuthMethod::Trust);
        assert_eq!(c.listen.port(), 1);
        let verifier = crate::scram::Verifier::new("pw", b"saltsaltsaltsalt", 4096);
        let with_users =
            format!("[[users]]\nname = \"app\"\npassword = \"{verifier}\"\nread_only = true\n");
        let c = open(toml::from_str(&with_users).expect("toml")).expect("config");
        assert_eq!(c.front.auth, AuthMethod::Scram);
        let plaintext = "[[users]]\nname = \"app\"\npassword = \"hunter2\"\n";
        let e = open(toml::from_str(plaintext).expect("toml")).expect_err("plaintext password");
        assert!(e.to_string().contains("SCRAM-SHA-256 verifier"));
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
        let bogus: FileConfig = toml::from_str("bogus = 1").expect("toml");
        assert!(bogus.check().is_err());
        let front: FileConfig =
            toml::from_str("max_query_length = 10\nslow_query_ms = 5\n").expect("toml");
        assert!(front.check().is_ok());
        assert_eq!(front.front.max_query_length, Some(10));
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
