//! Latency samples to medians, tails, throughput and recall.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Run {
    pub label: String,
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub qps: f64,
    pub recall: f64,
    /// Server CPU time per query in ms, when the server is a process we can watch.
    pub cpu_ms: Option<f64>,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `samples`: (latency ms, (relevant found, relevant)) per query.
pub fn summarize(
    label: String,
    samples: Vec<(f64, (usize, usize))>,
    wall: Duration,
    cpu: Option<Duration>,
) -> Run {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let (hit, all) = samples
        .iter()
        .fold((0, 0), |acc, s| (acc.0 + s.1.0, acc.1 + s.1.1));
    let n = samples.len();
    let secs = if wall.is_zero() {
        ms.iter().sum::<f64>() / 1000.0
    } else {
        wall.as_secs_f64()
    };
    Run {
        label,
        n,
        p50: percentile(&ms, 0.5),
        p99: percentile(&ms, 0.99),
        qps: n as f64 / secs.max(1e-9),
        recall: if all == 0 {
            f64::NAN
        } else {
            hit as f64 / all as f64
        },
        cpu_ms: cpu.map(|c| c.as_secs_f64() * 1000.0 / n.max(1) as f64),
    }
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "label": self.label, "n": self.n, "p50_ms": self.p50, "p99_ms": self.p99,
            "qps": self.qps, "recall": self.recall, "cpu_ms": self.cpu_ms,
        })
    }
}
