use clap::Parser;
use vectorgate::cli::{AttachArgs, Cli, Command, CqlArgs};
use vectorgate::config::{Config, FileConfig, RowArgs, VectorArgs};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Attach(args) => {
            let file = load(&args.config)?;
            let config = Config::resolve(
                None,
                args.data.clone(),
                None,
                row_args(args.cql.clone()),
                VectorArgs::default(),
                file,
            )?;
            return rt.block_on(attach(config, args));
        }
    };
    let file = load(&args.config)?;
    let vectors = VectorArgs {
        qdrant: args.qdrant,
        api_key: args.qdrant_api_key,
        collection_prefix: args.qdrant_collection_prefix,
        timeout_ms: args.qdrant_timeout_ms,
        fallback_max_rows: args.fallback_max_rows,
    };
    let config = Config::resolve(
        args.listen,
        args.data,
        args.max_k,
        row_args(args.cql),
        vectors,
        file,
    )?;
    rt.block_on(async move {
        let engine = vectorgate::server::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        tracing::info!(listen = %listener.local_addr()?, data = %config.data.display(), "vectorgate is serving");
        vectorgate::server::run(listener, engine, shutdown_signal()).await?;
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
    let attached = vectorgate::sync::attach(
        cql,
        &config.data,
        &vectorgate::sync::AttachRequest {
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
