//! Operations: the process-wide Prometheus counters and histograms, and the slow-query
//! log. [`crate::endpoint`] serves them over HTTP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

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
    /// Prepared queries run on the physical plan of their previous execution.
    pub plan_cache_hits: Counter,
    /// Prepared statements answered by a direct path (no planner).
    pub direct_statements: Counter,
    /// Prepared queries run on the plan made when they were prepared.
    pub prepared_plans: Counter,
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

    /// The Prometheus text exposition of the process-wide counters (the endpoint adds
    /// the engine's gauges).
    pub fn render(&self) -> String {
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
            "Prepared queries run on the physical plan of their previous execution (a search with a new query vector, or a query with the same values).",
            "counter",
            self.plan_cache_hits.get(),
        );
        gauge(
            &mut out,
            "vectorgate_direct_statements_total",
            "Prepared statements answered by a direct path, without the SQL planner.",
            "counter",
            self.direct_statements.get(),
        );
        gauge(
            &mut out,
            "vectorgate_prepared_plans_total",
            "Prepared queries run on the plan made when they were prepared, their parameters bound as typed values.",
            "counter",
            self.prepared_plans.get(),
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
        out
    }
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
        let text = m.render();
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
