//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vectorgate",
    version,
    about = "Postgres-wire SQL front door for vector search"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Postgres protocol.
    Serve(Box<ServeArgs>),
    /// Register an existing CQL table and build its vector index from its rows.
    Attach(AttachArgs),
    /// Compare a table's vector index with its rows and repair it (or only report).
    Reindex(ReindexArgs),
    /// Print the SCRAM-SHA-256 verifier of a password read from standard input, for the
    /// `password` of a `[[users]]` entry in the config file.
    Password,
}

/// Where vectors live when they live in a Qdrant server.
#[derive(Debug, Clone, clap::Args)]
pub struct QdrantArgs {
    /// Keep vectors in a Qdrant server: its gRPC URL, e.g. http://127.0.0.1:6334 [default: qdrant-edge in process]
    #[arg(long, env = "VECTORGATE_QDRANT", value_name = "URL")]
    pub qdrant: Option<String>,
    #[arg(long, env = "VECTORGATE_QDRANT_API_KEY", hide_env_values = true)]
    pub qdrant_api_key: Option<String>,
    /// Collections are named <prefix><table> [default: <keyspace>_]
    #[arg(long, env = "VECTORGATE_QDRANT_COLLECTION_PREFIX")]
    pub qdrant_collection_prefix: Option<String>,
    /// Deadline of each Qdrant request, in milliseconds [default: 5000]
    #[arg(long, env = "VECTORGATE_QDRANT_TIMEOUT_MS")]
    pub qdrant_timeout_ms: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct ReindexArgs {
    /// The table to check
    pub table: String,
    /// Only report what differs; change nothing
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub cql: CqlArgs,
    #[command(flatten)]
    pub index: QdrantArgs,
    /// Data directory (the embedded stores; stop the server first, or use
    /// `SELECT * FROM vectorgate_reindex('table')` while it runs)
    #[arg(long, env = "VECTORGATE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// TOML file with the proxy's settings
    #[arg(long, env = "VECTORGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where rows live when they live in a CQL cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct CqlArgs {
    /// Keep rows in ScyllaDB / Cassandra: comma-separated host:port contact points
    #[arg(long, env = "VECTORGATE_SCYLLA", value_name = "HOST:PORT[,...]")]
    pub scylla: Option<String>,
    /// Keyspace for rows and the table catalog [default: vectorgate]
    #[arg(long, env = "VECTORGATE_KEYSPACE")]
    pub keyspace: Option<String>,
    #[arg(long, env = "VECTORGATE_SCYLLA_USER")]
    pub scylla_user: Option<String>,
    #[arg(long, env = "VECTORGATE_SCYLLA_PASSWORD", hide_env_values = true)]
    pub scylla_password: Option<String>,
    /// Keyspace replication when it is created: a factor (SimpleStrategy) or dc1:3,dc2:3
    #[arg(long, env = "VECTORGATE_SCYLLA_REPLICATION")]
    pub scylla_replication: Option<String>,
    /// Client-side timeout of each CQL request, in milliseconds [default: 10000]
    #[arg(long, env = "VECTORGATE_SCYLLA_TIMEOUT_MS")]
    pub scylla_timeout_ms: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub cql: CqlArgs,
    #[command(flatten)]
    pub index: QdrantArgs,
    /// The CQL table to attach, as keyspace.table
    #[arg(long, value_name = "KEYSPACE.TABLE")]
    pub table: String,
    /// Its primary key columns, comma-separated (checked against the CQL key) [default: the CQL primary key]
    #[arg(long)]
    pub key: Option<String>,
    /// The vector column (vector<float, n> or list<float>)
    #[arg(long)]
    pub vector: String,
    /// cosine, l2 or dot
    #[arg(long, default_value = "cosine")]
    pub distance: String,
    /// The SQL name of the table [default: the CQL table name]
    #[arg(long)]
    pub name: Option<String>,
    /// The dimension, needed when the vectors are stored as list<float>
    #[arg(long)]
    pub dimension: Option<usize>,
    /// Data directory of the proxy that will serve the table (its vector index lives there)
    #[arg(long, env = "VECTORGATE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// TOML file with the proxy's settings
    #[arg(long, env = "VECTORGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5433]
    #[arg(long, env = "VECTORGATE_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Directory of the embedded row store and vector index [default: ./vectorgate-data]
    #[arg(long, env = "VECTORGATE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Largest k a vector_search may ask for [default: 10000]
    #[arg(long, env = "VECTORGATE_MAX_K")]
    pub max_k: Option<usize>,
    #[command(flatten)]
    pub cql: CqlArgs,
    #[command(flatten)]
    pub index: QdrantArgs,
    /// Most client connections at once; more are refused with SQLSTATE 53300 [default: 1000]
    #[arg(long, env = "VECTORGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most rows one transaction block may change; more are refused with SQLSTATE 54000 [default: 100000]
    #[arg(long, env = "VECTORGATE_MAX_TRANSACTION_ROWS")]
    pub max_transaction_rows: Option<usize>,
    /// While the vector index is away, exact scans reading more rows are refused (53000) [default: 1000000]
    #[arg(long, env = "VECTORGATE_FALLBACK_MAX_ROWS")]
    pub fallback_max_rows: Option<usize>,
    #[command(flatten)]
    pub front: crate::config::FrontArgs,
    /// TOML file with the same settings (listen, data, max_k, scylla, keyspace, qdrant, ...)
    #[arg(long, env = "VECTORGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}
