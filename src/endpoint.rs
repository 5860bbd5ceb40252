//! The operations endpoint (`--metrics ADDR`): `/metrics` (Prometheus: the process-wide
//! counters of [`crate::metrics`] and the engine's gauges), `/healthz` and `/readyz`,
//! over a small HTTP/1.1 server.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::engine::Core;

/// The counters, then the index breaker and the pending index writes per table.
async fn render(core: &Core) -> String {
    let mut out = crate::metrics::global().render();
    let shared = core;

    let state = shared.health.state_name();
    let _ = writeln!(
        out,
        "# HELP vectorgate_index_breaker Vector-index circuit breaker (1 for the current state).\n# TYPE vectorgate_index_breaker gauge"
    );
    for s in ["closed", "open", "recovering"] {
        let _ = writeln!(
            out,
            "vectorgate_index_breaker{{state=\"{s}\"}} {}",
            u8::from(s == state)
        );
    }
    let defs: Vec<_> = shared.tables();
    let _ = writeln!(
        out,
        "# HELP vectorgate_index_pending_writes Row changes not yet applied to the vector index.\n# TYPE vectorgate_index_pending_writes gauge"
    );
    for def in defs {
        let pending = tokio::time::timeout(
            Duration::from_secs(2),
            shared.rows.outbox_pending(&def, i64::MAX, 100_000),
        )
        .await;
        if let Ok(Ok(p)) = pending {
            let _ = writeln!(
                out,
                "vectorgate_index_pending_writes{{table=\"{}\"}} {}",
                def.name.replace('"', "'"),
                p.len()
            );
        }
    }
    out
}

/// Serve `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(listener: TcpListener, core: Arc<Core>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    let n = socket.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                std::io::Result::Ok(())
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(5), read).await,
                Ok(Ok(()))
            ) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = answer(path, &core).await;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

async fn answer(path: &str, core: &Core) -> (&'static str, String) {
    match path {
        "/metrics" => ("200 OK", render(core).await),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" => {
            if crate::metrics::global()
                .shutting_down
                .load(Ordering::Relaxed)
            {
                return ("503 Service Unavailable", "shutting down\n".into());
            }
            let rows = tokio::time::timeout(Duration::from_secs(2), core.rows.list_tables()).await;
            match rows {
                Ok(Ok(_)) => (
                    "200 OK",
                    format!("ready; vector index breaker {}\n", core.health.state_name()),
                ),
                _ => (
                    "503 Service Unavailable",
                    "the row store does not answer\n".into(),
                ),
            }
        }
        _ => ("404 Not Found", "not found\n".into()),
    }
}

/// Bind the metrics endpoint and serve it in the background.
pub async fn spawn(addr: SocketAddr, core: Arc<Core>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, core));
    Ok(local)
}
