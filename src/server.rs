//! The server: opens the stores, accepts connections and hands each to the wire layer.
//! Tests and `main` both call [`run`] with a bound listener and a shutdown future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, RowBackend, VectorBackend};
use crate::engine::Limits;
use crate::error::Result;
use crate::sql::Engine;
use crate::store::edge_index::EdgeIndex;
use crate::store::embedded_rows::EmbeddedRows;
use crate::store::qdrant_index::QdrantIndex;
use crate::store::scylla_rows::ScyllaRows;
use crate::store::{RowStore, VectorIndex};
use crate::wire::Handlers;
use crate::wire::conn::ConnLimits;

/// Tell a client over the connection limit so, as Postgres does: read its startup
/// packet (answering an SSLRequest with 'N' first), send a FATAL 53300, close.
async fn refuse(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read_packet = async |s: &mut tokio::net::TcpStream| -> std::io::Result<Vec<u8>> {
        let len = s.read_u32().await? as usize;
        let mut body = vec![0u8; len.saturating_sub(4).min(10_000)];
        s.read_exact(&mut body).await?;
        Ok(body)
    };
    let exchange = async {
        let mut first = read_packet(&mut socket).await?;
        // SSLRequest / GSSENCRequest: no encryption here; the startup packet follows.
        if matches!(first.get(..4), Some([4, 210, 22, 47] | [4, 210, 22, 48])) {
            socket.write_all(b"N").await?;
            first = read_packet(&mut socket).await?;
        }
        let _ = first;
        let mut fields = Vec::new();
        for (code, text) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "53300"),
            (b'M', "sorry, too many clients already"),
        ] {
            fields.push(code);
            fields.extend_from_slice(text.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut msg = vec![b'E'];
        msg.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(&fields);
        socket.write_all(&msg).await?;
        socket.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
}

/// Open the stores the configuration names.
pub async fn open_stores(config: &Config) -> Result<(Arc<dyn RowStore>, Arc<dyn VectorIndex>)> {
    let rows: Arc<dyn RowStore> = match &config.rows {
        RowBackend::Embedded => Arc::new(EmbeddedRows::open(
            &config.data.join("rows.redb"),
            config.front.embedded_cache_bytes,
        )?),
        RowBackend::Scylla(cfg) => {
            let rows = ScyllaRows::connect(cfg).await?;
            tracing::info!(hosts = %cfg.hosts.join(","), keyspace = %cfg.keyspace, "rows are kept in the CQL cluster");
            Arc::new(rows)
        }
    };
    Ok((rows, open_index(config)?))
}

/// Open the vector index the configuration names.
pub fn open_index(config: &Config) -> Result<Arc<dyn VectorIndex>> {
    let index: Arc<dyn VectorIndex> = match &config.vectors {
        VectorBackend::Embedded => {
            let index = EdgeIndex::open(&config.data.join("vectors"))?;
            index.spawn_maintenance(Duration::from_secs(1));
            index
        }
        VectorBackend::Qdrant(settings) => {
            tracing::info!(url = %settings.url, prefix = %settings.collection_prefix, "vectors are kept in Qdrant");
            Arc::new(QdrantIndex::connect(settings.clone())?)
        }
    };
    let index: Arc<dyn VectorIndex> = if crate::faults::enabled() {
        tracing::warn!("fault injection is on (VECTORGATE_FAULT_INJECTION=1): for tests only");
        Arc::new(crate::faults::FaultyIndex { inner: index })
    } else {
        index
    };
    Ok(index)
}

/// Open the stores the configuration names and build the engine.
pub async fn open(config: &Config) -> Result<Arc<Engine>> {
    let (rows, index) = open_stores(config).await?;
    let limits = Limits {
        max_k: config.max_k,
        fallback_max_rows: config.fallback_max_rows,
        max_transaction_rows: config.max_transaction_rows,
        probe_interval: Duration::from_millis(500),
        reconcile_interval: Duration::from_secs(1),
        // Longer than a write may wait for its index to make it durable (the embedded
        // index puts flushes off for up to 5 s during a bulk load): a younger entry is
        // most likely a write still in flight, which the reconciler would only repeat.
        reconcile_grace: Duration::from_secs(10),
    };
    Engine::new(rows, index, limits).await
}

/// Serve connections until `shutdown` completes. At most `max_connections` clients at
/// once: the next one is told 53300 and closed. On shutdown: stop accepting, close idle
/// sessions (57P01), let running statements finish for up to `shutdown_timeout`, then
/// flush the index.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let front = &config.front;
    if let Some(version) = &front.server_version {
        crate::announce_version(version).map_err(crate::error::Error::InvalidParameter)?;
    }
    let opener: crate::databases::Opener =
        Arc::new(|config| Box::pin(async move { open(&config).await }));
    let databases =
        crate::databases::Databases::new(config.clone(), engine.clone(), opener).await?;
    let handlers = Arc::new(Handlers::new(databases.clone(), front));
    let tls = match (&front.tls_cert, &front.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::wire::tls::Tls::open(cert, key)
                .map_err(|e| crate::error::Error::InvalidParameter(e.to_string()))?;
            #[cfg(unix)]
            if let Err(e) = tls.reload_on_sighup() {
                tracing::warn!(error = %e, "cannot watch SIGHUP: the TLS certificate will not be reloaded");
            }
            Some(tls)
        }
        _ => None,
    };
    let limits = ConnLimits {
        idle_session_timeout: front.idle_session_timeout,
        max_message_size: front.max_message_size,
    };
    let metrics = crate::metrics::global();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        metrics.connections_refused.inc();
                        tracing::warn!(%peer, max_connections = config.max_connections, "connection refused: too many clients");
                        tokio::spawn(refuse(socket));
                        continue;
                    };
                    metrics.connections_total.inc();
                    metrics.connections_active.inc();
                    let h = handlers.clone();
                    let acceptor = tls.as_ref().map(|t| t.acceptor());
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        if let Err(e) = crate::wire::conn::serve(socket, acceptor, h, limits, stop).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        metrics.connections_active.dec();
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    metrics
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    tracing::info!(
        connections = open,
        deadline_ms = front.shutdown_timeout.as_millis() as u64,
        "shutting down: no new connections; waiting for running statements"
    );
    let drained = tokio::time::timeout(front.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown deadline passed: closing the remaining connections"
        );
        connections.shutdown().await;
    }
    databases.shutdown().await;
    engine.core().shutdown().await;
    tracing::info!("flushing the vector index");
    engine.index().flush().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}
