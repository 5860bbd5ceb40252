//! Operations: Prometheus metrics, `/healthz` and `/readyz` over a small HTTP/1.1
//! endpoint (`--metrics ADDR`), and the slow-query log. The counters are process-wide.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::sql::Engine;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: counts per bucket (not cumulative), sum and count.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.buckets[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_active: Counter,
    pub connections_total: Counter,
    pub connections_refused: Counter,
    pub auth_failures: Counter,
    pub slow_queries: Counter,
    /// Prepared searches served from their cached plan.
    pub plan_cache_hits: Counter,
    /// (kind, outcome) -> count
    queries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// kind -> latency
    query_latency: Mutex<BTreeMap<&'static str, Histogram>>,
    /// (store, operation) -> latency
    backend_latency: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    /// (store, SQLSTATE) -> count
    backend_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub shutting_down: AtomicBool,
}

pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// A statement finished: its kind ("search", "select", "insert", ...), outcome
    /// ("ok", "error", "canceled") and how long it took.
    pub fn query(&self, kind: &'static str, outcome: &'static str, elapsed: Duration) {
        *self.queries.lock().entry((kind, outcome)).or_default() += 1;
        self.query_latency
            .lock()
            .entry(kind)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A call to a backend ("row store", "vector index") took `elapsed`.
    pub fn backend(&self, store: &'static str, op: &'static str, elapsed: Duration) {
        self.backend_latency
            .lock()
            .entry((store, op))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A backend failed a statement with `sqlstate`.
    pub fn backend_error(&self, store: &'static str, sqlstate: &'static str) {
        *self
            .backend_errors
            .lock()
            .entry((store, sqlstate))
            .or_default() += 1;
    }

    /// The Prometheus text exposition; `engine` adds the index breaker and the
    /// pending index writes.
    pub async fn render(&self, engine: Option<&Arc<Engine>>) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "vectorgate_connections",
            "Client connections open now.",
            "gauge",
            self.connections_active.get(),
        );
        gauge(
            &mut out,
            "vectorgate_connections_total",
            "Client connections accepted.",
            "counter",
            self.connections_total.get(),
        );
        gauge(
            &mut out,
            "vectorgate_connections_refused_total",
            "Connections refused over max_connections.",
            "counter",
            self.connections_refused.get(),
        );
        gauge(
            &mut out,
            "vectorgate_auth_failures_total",
            "Failed authentications.",
            "counter",
            self.auth_failures.get(),
        );
        gauge(
            &mut out,
            "vectorgate_slow_queries_total",
            "Statements over the slow-query threshold.",
            "counter",
            self.slow_queries.get(),
        );
        gauge(
            &mut out,
            "vectorgate_plan_cache_hits_total",
            "Prepared searches run on the plan of their previous execution.",
            "counter",
            self.plan_cache_hits.get(),
        );
        let _ = writeln!(
            out,
            "# HELP vectorgate_queries_total Statements by kind and outcome.\n# TYPE vectorgate_queries_total counter"
        );
        for ((kind, outcome), n) in self.queries.lock().iter() {
            let _ = writeln!(
                out,
                "vectorgate_queries_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP vectorgate_query_duration_seconds Statement latency by kind.\n# TYPE vectorgate_query_duration_seconds histogram"
        );
        for (kind, h) in self.query_latency.lock().iter() {
            h.render(
                &mut out,
                "vectorgate_query_duration_seconds",
                &format!("kind=\"{kind}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP vectorgate_backend_duration_seconds Backend call latency.\n# TYPE vectorgate_backend_duration_seconds histogram"
        );
        for ((store, op), h) in self.backend_latency.lock().iter() {
            h.render(
                &mut out,
                "vectorgate_backend_duration_seconds",
                &format!("store=\"{}\",op=\"{op}\"", store.replace(' ', "_")),
            );
        }
        let _ = writeln!(
            out,
            "# HELP vectorgate_backend_errors_total Statements failed by a backend.\n# TYPE vectorgate_backend_errors_total counter"
        );
        for ((store, code), n) in self.backend_errors.lock().iter() {
            let _ = writeln!(
                out,
                "vectorgate_backend_errors_total{{store=\"{}\",sqlstate=\"{code}\"}} {n}",
                store.replace(' ', "_")
            );
        }
        if let Some(engine) = engine {
            let shared = engine.shared();
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
            let defs: Vec<_> = shared.tables.read().values().cloned().collect();
            let _ = writeln!(
                out,
                "# HELP vectorgate_index_pending_writes Row changes not yet applied to the vector index.\n# TYPE vectorgate_index_pending_writes gauge"
            );
            for def in defs {
                let pending = tokio::time::timeout(
                    Duration::from_secs(2),
                    shared.rows.outbox_pending(&def, 100_000),
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
        }
        out
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let engine = engine.clone();
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
            let (status, body) = answer(path, &engine).await;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

async fn answer(path: &str, engine: &Arc<Engine>) -> (&'static str, String) {
    match path {
        "/metrics" => ("200 OK", global().render(Some(engine)).await),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" => {
            if global().shutting_down.load(Ordering::Relaxed) {
                return ("503 Service Unavailable", "shutting down\n".into());
            }
            let rows =
                tokio::time::timeout(Duration::from_secs(2), engine.shared().rows.list_tables())
                    .await;
            match rows {
                Ok(Ok(_)) => (
                    "200 OK",
                    format!(
                        "ready; vector index breaker {}\n",
                        engine.shared().health.state_name()
                    ),
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
pub async fn spawn(addr: SocketAddr, engine: Arc<Engine>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, engine));
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_in_the_exposition() {
        let m = Metrics::default();
        m.query("search", "ok", Duration::from_micros(300));
        m.query("search", "ok", Duration::from_millis(3));
        m.query("search", "error", Duration::from_secs(20));
        let text = futures::executor::block_on(m.render(None));
        assert!(text.contains("vectorgate_queries_total{kind=\"search\",outcome=\"ok\"} 2"));
        assert!(text.contains("vectorgate_queries_total{kind=\"search\",outcome=\"error\"} 1"));
        assert!(
            text.contains(
                "vectorgate_query_duration_seconds_bucket{kind=\"search\",le=\"0.0005\"} 1"
            )
        );
        assert!(
            text.contains(
                "vectorgate_query_duration_seconds_bucket{kind=\"search\",le=\"0.005\"} 2"
            )
        );
        assert!(
            text.contains(
                "vectorgate_query_duration_seconds_bucket{kind=\"search\",le=\"+Inf\"} 3"
            )
        );
        assert!(text.contains("vectorgate_query_duration_seconds_count{kind=\"search\"} 3"));
    }
}
