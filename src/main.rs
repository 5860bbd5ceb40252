use clap::Parser;
use vectorgate::cli::{AttachArgs, Cli, Command, CqlArgs, QdrantArgs, ReindexArgs};
use vectorgate::config::{Config, FileConfig, RowArgs, VectorArgs};

/// Rows, Arrow arrays and JSON values are many small allocations made on every worker at
/// once: under glibc's malloc a search over 100K rows spent a third of its time in the
/// allocator and waiting on its arena locks (`perf`); mimalloc keeps one heap per thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs go to stderr, as text or (for log collectors) one JSON object per line.
fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The SQL planner recurses over a statement's tree, and a debug build's futures are
    // large: LangGraph's search (a CTE over a join, DISTINCT ON, ordered twice) overflowed
    // the default 2 MiB worker stack and took the process down. Untouched stack pages
    // cost nothing.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(16 << 20)
        .enable_all()
        .build()?;
    let args = match cli.command {
        Command::Serve(args) => *args,
        Command::Password => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!("give the password on standard input");
            }
            let verifier = vectorgate::scram::Verifier::generate(password);
            #[allow(clippy::print_stdout)]
            {
                println!("{verifier}");
            }
            return Ok(());
        }
        Command::Attach(args) => {
            init_logging(false);
            let config = tool_config(&args.config, &args.data, &args.cql, &args.index)?;
            return rt.block_on(attach(config, args));
        }
        Command::Reindex(args) => {
            init_logging(false);
            let config = tool_config(&args.config, &args.data, &args.cql, &args.index)?;
            return rt.block_on(reindex(config, args));
        }
    };
    let mut file = load(&args.config)?;
    file.front = args.front.or(std::mem::take(&mut file.front));
    let vectors = VectorArgs {
        fallback_max_rows: args.fallback_max_rows,
        ..vector_args(args.index)
    };
    let mut config = Config::resolve(
        args.listen,
        args.data,
        args.max_k,
        row_args(args.cql),
        vectors,
        file,
    )?;
    if let Some(n) = args.max_transaction_rows {
        config.max_transaction_rows = n;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if config.max_connections == 0 {
        anyhow::bail!("max_connections must be at least 1");
    }
    init_logging(config.front.log_json);
    rt.block_on(async move {
        let engine = vectorgate::server::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        tracing::info!(listen = %listener.local_addr()?, data = %config.data.display(), "vectorgate is serving");
        if let Some(addr) = config.front.metrics {
            let bound = vectorgate::endpoint::spawn(addr, engine.core().clone()).await?;
            tracing::info!(metrics = %bound, "serving /metrics, /healthz and /readyz");
        }
        vectorgate::server::run(listener, engine, &config, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(())
}

fn load(path: &Option<std::path::PathBuf>) -> anyhow::Result<FileConfig> {
    match path {
        Some(p) => FileConfig::load(p),
        None => Ok(FileConfig::default()),
    }
}

/// The settings of a one-off command (attach, reindex): its stores, no listener.
fn tool_config(
    file: &Option<std::path::PathBuf>,
    data: &Option<std::path::PathBuf>,
    cql: &CqlArgs,
    index: &QdrantArgs,
) -> anyhow::Result<Config> {
    Config::resolve(
        None,
        data.clone(),
        None,
        row_args(cql.clone()),
        vector_args(index.clone()),
        load(file)?,
    )
}

fn vector_args(a: QdrantArgs) -> VectorArgs {
    VectorArgs {
        qdrant: a.qdrant,
        api_key: a.qdrant_api_key,
        collection_prefix: a.qdrant_collection_prefix,
        timeout_ms: a.qdrant_timeout_ms,
        fallback_max_rows: None,
    }
}

async fn reindex(config: Config, args: ReindexArgs) -> anyhow::Result<()> {
    let (rows, index) = vectorgate::server::open_stores(&config)
        .await
        .map_err(|e| anyhow::anyhow!("{e} (while a server runs on these stores, use SELECT * FROM vectorgate_reindex('{}') instead)", args.table))?;
    let def = rows
        .list_tables()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .find(|d| d.name == args.table)
        .ok_or_else(|| anyhow::anyhow!("relation \"{}\" does not exist", args.table))?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = std::time::Instant::now();
    let report = vectorgate::engine::sync::reindex(
        rows.as_ref(),
        index.as_ref(),
        &def,
        !args.verify,
        &mut |r| {
            if tty {
                eprint!(
                    "\r  {}: {} rows, {} points, {} missing, {} stale, {} orphaned   ",
                    def.name, r.rows, r.points, r.missing, r.stale, r.orphaned
                );
            } else if last.elapsed() >= std::time::Duration::from_secs(2) {
                last = std::time::Instant::now();
                eprintln!(
                    "{}: {} rows, {} points, {} missing, {} stale, {} orphaned",
                    def.name, r.rows, r.points, r.missing, r.stale, r.orphaned
                );
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    index.flush().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if tty {
        eprintln!();
    }
    eprintln!(
        "{}: {} rows, {} points; {} missing, {} stale, {} orphaned, {} duplicates; {}",
        def.name,
        report.rows,
        report.points,
        report.missing,
        report.stale,
        report.orphaned,
        report.duplicates,
        if report.repaired {
            "repaired"
        } else {
            "verified only"
        }
    );
    Ok(())
}

fn row_args(a: CqlArgs) -> RowArgs {
    RowArgs {
        scylla: a.scylla,
        keyspace: a.keyspace,
        user: a.scylla_user,
        password: a.scylla_password,
        replication: a.scylla_replication,
        timeout_ms: a.scylla_timeout_ms,
    }
}

async fn attach(config: Config, args: AttachArgs) -> anyhow::Result<()> {
    let vectorgate::config::RowBackend::Scylla(cql) = &config.rows else {
        anyhow::bail!("attach needs --scylla: only tables of a CQL cluster can be attached");
    };
    let distance = vectorgate::store::Distance::parse(&args.distance).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown distance \"{}\": use cosine, l2 or dot",
            args.distance
        )
    })?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.table
            .rsplit('.')
            .next()
            .unwrap_or(&args.table)
            .to_string()
    });
    let index = vectorgate::server::open_index(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let attached = vectorgate::engine::sync::attach(
        cql,
        index.as_ref(),
        &vectorgate::engine::sync::AttachRequest {
            cql_table: args.table.clone(),
            name,
            key: args
                .key
                .as_ref()
                .map(|k| k.split(',').map(|c| c.trim().to_string()).collect()),
            vector: args.vector.clone(),
            distance,
            dimension: args.dimension,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "attached {} as table \"{}\": {} rows, {} vectors indexed",
        args.table, attached.name, attached.rows, attached.indexed
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
