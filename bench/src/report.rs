//! BENCHMARKS.md and results.json from one run's records.

use std::fmt::Write as _;
use std::path::Path;

use crate::data::{FILTERS, short};
use crate::stats::Run;

pub struct Record {
    pub data: String,
    pub n: usize,
    /// latency | concurrency | ef | exact | direct | cassandra-proxy | sai
    pub section: &'static str,
    pub k: usize,
    pub clients: usize,
    pub filter: usize,
    pub ef: Option<usize>,
    pub run: Run,
}

pub struct Ingest {
    pub backend: String,
    pub method: String,
    pub rows: usize,
    pub rate: f64,
}

impl Ingest {
    pub fn new(backend: &str, method: &str, rows: usize, rate: f64) -> Ingest {
        Ingest {
            backend: backend.into(),
            method: method.into(),
            rows,
            rate,
        }
    }
}

pub struct Report {
    command: String,
    server: String,
    queries: usize,
    pub records: Vec<Record>,
    pub ingest: Vec<Ingest>,
    /// (data, rows, peak RSS MiB, RSS MiB) after the concurrency runs.
    pub memory: Vec<(String, usize, f64, f64)>,
    /// (rows, seconds) from the end of the load until the optimiser was quiet.
    pub index_wait: Vec<(usize, f64)>,
    pub notes: Vec<String>,
    pub digits_title: Option<String>,
    /// Where the plots are drawn (relative to the report).
    pub plots: Option<std::path::PathBuf>,
}

pub fn line(r: &Run) -> String {
    format!(
        "{:<48} p50 {:>8.3} ms  p99 {:>8.3} ms  {:>8.1} q/s  recall {:.3}{}",
        r.label,
        r.p50,
        r.p99,
        r.qps,
        r.recall,
        r.cpu_ms
            .map(|c| format!("  cpu {c:.3} ms/q"))
            .unwrap_or_default()
    )
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(String::new(), |kb| format!(", {:.0} GiB", kb / 1048576.0));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .map_or(String::new(), |m| format!(" ({m})"));
    format!("{cores} cores{cpu}{mem}")
}

/// "10k", or "digits 1600".
fn rows_label(r: &Record) -> String {
    if r.data == "digits" {
        format!("digits {}", r.n)
    } else {
        short(r.n)
    }
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

impl Report {
    pub fn new(command: String, server: &Path, queries: usize) -> Report {
        Report {
            command,
            server: server.display().to_string(),
            queries,
            records: Vec::new(),
            ingest: Vec::new(),
            memory: Vec::new(),
            index_wait: Vec::new(),
            notes: Vec::new(),
            digits_title: None,
            plots: None,
        }
    }

    fn find(
        &self,
        data: &str,
        section: &str,
        k: usize,
        clients: usize,
        filter: usize,
    ) -> Option<&Run> {
        self.records
            .iter()
            .find(|r| {
                r.data == data
                    && r.section == section
                    && r.k == k
                    && r.clients == clients
                    && r.filter == filter
                    && r.ef.is_none()
            })
            .map(|r| &r.run)
    }

    /// The records of `section`, each with the one-client k = 10 index search over the
    /// wire of the same data and filter.
    fn beside_index<'a>(&'a self, section: &'a str) -> impl Iterator<Item = (&'a Record, &'a Run)> {
        self.records
            .iter()
            .filter(move |r| r.section == section)
            .filter_map(|r| {
                self.find(&r.data, "latency", 10, 1, r.filter)
                    .map(|p| (r, p))
            })
    }

    fn sizes(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = Vec::new();
        for r in &self.records {
            if r.data != "digits" && !v.iter().any(|x| x.0 == r.data) {
                v.push((r.data.clone(), r.n));
            }
        }
        v
    }

    /// The report; `analysis` (a hand-written reading of the figures, kept between runs)
    /// goes right after the summary against the targets.
    pub fn markdown(&self, analysis: Option<&str>) -> String {
        let mut o = String::new();
        let date = chrono::Utc::now().format("%Y-%m-%d");
        let sizes = self.sizes();
        let _ = writeln!(o, "# Benchmarks\n");
        let _ = writeln!(
            o,
            "Command: `{}`. Machine: {}. Date: {date}. Server: `{}` ({} build of the benchmark client). Written by `vectorgate-bench` (`bench/`); the plots are drawn by `bench/plot.py` from `bench/results/results.json`.\n",
            self.command,
            machine(),
            self.server,
            if cfg!(debug_assertions) {
                "a debug"
            } else {
                "a release"
            },
        );
        let _ = writeln!(
            o,
            "Data: clustered unit vectors (100 centres, fixed seed) with a column `cat` (0..99, a hash of the id) whose filters pass 50% (`cat < 50`), 10% (`cat < 10`) and 1% (`cat = 7`) of rows. {} queries per workload, drawn like the data; recall@k against exact ground truth computed by brute force (cached between runs). Searches are `SELECT id, distance FROM vector_search('items', $1, k) [WHERE ...]` prepared over the wire by tokio-postgres (binary results), on the embedded stores unless a row says Cassandra. One run on a shared machine: read medians and ratios measured side by side, not single figures.\n",
            self.queries
        );

        // Summary against the targets.
        let _ = writeln!(o, "## Against the targets\n");
        let _ = writeln!(
            o,
            "Targets (k = 10, embedded stores, one client): p50 at most 1 ms at 10K rows, 2 ms at 100K, 4 ms at 1M; recall@10 at least 0.95 at every selectivity; proxy p50 at most 1.10 x the direct calls; more QPS than Cassandra 5's SAI at equal recall; ingest at least 5,000 rows/s of 384-d rows.\n"
        );
        let _ = writeln!(
            o,
            "| rows | p50 ms, no filter | p50 ms, 1% pass | lowest recall@10 over filters | proxy / direct p50 (no filter) | QPS vs Cassandra SAI (4 clients, no filter) | COPY load rows/s |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for (data, n) in &sizes {
            let p = |f| self.find(data, "latency", 10, 1, f);
            let worst = (0..FILTERS.len())
                .filter_map(|f| p(f).map(|r| r.recall))
                .fold(f64::NAN, f64::min);
            let ratio = match (p(0), self.find(data, "direct", 10, 1, 0)) {
                (Some(a), Some(b)) => format!("{:.2}", a.p50 / b.p50),
                _ => "-".into(),
            };
            let sai = match (
                self.find(data, "concurrency", 10, 4, 0),
                self.find(data, "sai", 10, 4, 0),
            ) {
                (Some(a), Some(b)) => format!(
                    "{:.0} vs {:.0} ({:.1}x; recall {:.3} vs {:.3})",
                    a.qps,
                    b.qps,
                    a.qps / b.qps,
                    a.recall,
                    b.recall
                ),
                _ => "not run".into(),
            };
            let load = self
                .ingest
                .iter()
                .find(|i| i.backend == "embedded" && i.method == "COPY (load)" && i.rows == *n)
                .map_or("-".into(), |i| format!("{:.0}", i.rate));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.3} | {ratio} | {sai} | {load} |",
                short(*n),
                p(0).map_or("-".into(), |r| ms(r.p50)),
                p(3).map_or("-".into(), |r| ms(r.p50)),
                worst
            );
        }
        o.push('\n');

        if let Some(a) = analysis {
            o.push_str(a);
            o.push_str("\n\n");
        }
        // One client, every k and filter.
        let _ = writeln!(o, "## Latency and recall, one client\n");
        let _ = writeln!(
            o,
            "Server CPU is the proxy process's user + system time over the run, per query.\n"
        );
        let _ = writeln!(
            o,
            "| rows | k | filter | p50 ms | p99 ms | QPS | recall@k | server CPU ms/query |\n|---|---|---|---|---|---|---|---|"
        );
        for r in self
            .records
            .iter()
            .filter(|r| r.section == "latency" && r.data != "digits")
        {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {:.0} | {:.3} | {} |",
                short(r.n),
                r.k,
                FILTERS[r.filter].label,
                ms(r.run.p50),
                ms(r.run.p99),
                r.run.qps,
                r.run.recall,
                r.run.cpu_ms.map_or("-".into(), ms)
            );
        }
        o.push('\n');

        let _ = writeln!(o, "## Concurrency\n");
        let _ = writeln!(
            o,
            "k = 10; each client runs its share of the queries back to back (closed loop) on its own connection.\n"
        );
        let _ = writeln!(
            o,
            "| rows | clients | filter | QPS | p50 ms | p99 ms | recall@10 |\n|---|---|---|---|---|---|---|"
        );
        for (data, _) in &sizes {
            let mut rows: Vec<&Record> = self
                .records
                .iter()
                .filter(|r| {
                    &r.data == data
                        && r.k == 10
                        && r.ef.is_none()
                        && (r.section == "concurrency"
                            || (r.section == "latency" && (r.filter == 0 || r.filter == 3)))
                })
                .collect();
            rows.sort_by_key(|r| (r.filter, r.clients));
            for r in rows {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {:.0} | {} | {} | {:.3} |",
                    short(r.n),
                    r.clients,
                    FILTERS[r.filter].label,
                    r.run.qps,
                    ms(r.run.p50),
                    ms(r.run.p99),
                    r.run.recall
                );
            }
        }
        if !self.memory.is_empty() {
            let _ = writeln!(
                o,
                "\nProxy memory after the concurrency runs (embedded stores: the index and the row store live in the proxy's process):\n"
            );
            let _ = writeln!(o, "| rows | peak RSS MiB | RSS MiB |\n|---|---|---|");
            for (_, n, peak, rss) in &self.memory {
                let _ = writeln!(o, "| {} | {peak:.0} | {rss:.0} |", short(*n));
            }
        }
        o.push('\n');

        let _ = writeln!(o, "## Proxy overhead: over the wire against direct calls\n");
        let _ = writeln!(
            o,
            "Direct: the benchmark opens the same index and row store in process after the server stopped and makes the same index search and k row fetches the proxy makes, one query at a time (k = 10).\n"
        );
        let _ = writeln!(
            o,
            "| rows | filter | proxy p50 ms | direct p50 ms | ratio p50 | proxy p99 ms | direct p99 ms | proxy CPU ms/query |\n|---|---|---|---|---|---|---|---|"
        );
        for (r, p) in self.beside_index("direct") {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                rows_label(r),
                FILTERS[r.filter].label,
                ms(p.p50),
                ms(r.run.p50),
                p.p50 / r.run.p50,
                ms(p.p99),
                ms(r.run.p99),
                p.cpu_ms.map_or("-".into(), ms)
            );
        }
        o.push('\n');

        let _ = writeln!(o, "## Index against the exact scan\n");
        let _ = writeln!(
            o,
            "The exact scan is the path searches take when the vector index is unavailable (`SET vectorgate.row_scan = on` forces it): every row is read from the row store and ranked. Fewer queries are timed as rows grow.\n"
        );
        let _ = writeln!(
            o,
            "| rows | filter | index p50 ms | exact p50 ms | speedup | exact queries timed | index recall@10 |\n|---|---|---|---|---|---|---|"
        );
        for (r, p) in self.beside_index("exact") {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.0}x | {} | {:.3} |",
                rows_label(r),
                FILTERS[r.filter].label,
                ms(p.p50),
                ms(r.run.p50),
                r.run.p50 / p.p50,
                r.run.n,
                p.recall
            );
        }
        o.push('\n');

        let _ = writeln!(o, "## Recall against QPS: the hnsw_ef sweep\n");
        let _ = writeln!(
            o,
            "`SET vectorgate.hnsw_ef = N` per session; one client, k = 10.\n"
        );
        let _ = writeln!(
            o,
            "| rows | hnsw_ef | recall@10, no filter | QPS, no filter | recall@10, 1% pass | QPS, 1% pass |\n|---|---|---|---|---|---|"
        );
        for r in self
            .records
            .iter()
            .filter(|r| r.section == "ef" && r.filter == 0)
        {
            let one = self
                .records
                .iter()
                .find(|x| x.section == "ef" && x.data == r.data && x.ef == r.ef && x.filter == 3);
            let _ = writeln!(
                o,
                "| {} | {} | {:.3} | {:.0} | {} | {} |",
                short(r.n),
                r.ef.unwrap_or(0),
                r.run.recall,
                r.run.qps,
                one.map_or("-".into(), |x| format!("{:.3}", x.run.recall)),
                one.map_or("-".into(), |x| format!("{:.0}", x.run.qps))
            );
        }
        o.push('\n');

        let _ = writeln!(o, "## Against Cassandra 5's own vector search\n");
        if self
            .records
            .iter()
            .any(|r| r.section == "sai" || r.section == "cassandra-proxy")
        {
            let _ = writeln!(
                o,
                "Cassandra 5.0 (one node, started by `scripts/dev-cassandra` on this machine) with a SAI vector index (`similarity_function` as the table's distance) and a SAI index on `cat`, queried with prepared `SELECT id, title ... [WHERE filter] ORDER BY embedding ANN OF ? LIMIT 10` through the scylla driver. vectorgate rows: the proxy with the embedded stores, and the proxy with its rows in the same Cassandra (vectors in its embedded index).\n"
            );
            let _ = writeln!(
                o,
                "| rows | filter | clients | vectorgate embedded: QPS, p50/p99 ms, recall | vectorgate, rows in Cassandra | Cassandra SAI |\n|---|---|---|---|---|---|"
            );
            let cell = |r: Option<&Run>| {
                r.map_or("-".into(), |r| {
                    format!(
                        "{:.0} q/s, {}/{}, {:.3}",
                        r.qps,
                        ms(r.p50),
                        ms(r.p99),
                        r.recall
                    )
                })
            };
            for (data, n) in &sizes {
                for clients in [1, 4] {
                    for (f, filter) in FILTERS.iter().enumerate() {
                        let sai = self.find(data, "sai", 10, clients, f);
                        let cp = self.find(data, "cassandra-proxy", 10, clients, f);
                        if sai.is_none() && cp.is_none() {
                            continue;
                        }
                        let emb = if clients == 1 {
                            self.find(data, "latency", 10, 1, f)
                        } else {
                            self.find(data, "concurrency", 10, clients, f)
                        };
                        let _ = writeln!(
                            o,
                            "| {} | {} | {clients} | {} | {} | {} |",
                            short(*n),
                            filter.label,
                            cell(emb),
                            cell(cp),
                            cell(sai)
                        );
                    }
                }
            }
        } else {
            let _ = writeln!(
                o,
                "Not run (pass `--cassandra HOST:PORT`; `scripts/bench.sh` starts one)."
            );
        }
        o.push('\n');

        let _ = writeln!(o, "## Ingest\n");
        let _ = writeln!(
            o,
            "Rows of {} dimensions through the proxy (one connection) unless said otherwise. The load figures include the index writes and run while the index optimiser builds segments in the background.\n",
            self.records.first().map_or(384, |_| 384)
        );
        let _ = writeln!(o, "| into | how | rows | rows/s |\n|---|---|---|---|");
        for i in &self.ingest {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} |",
                i.backend, i.method, i.rows, i.rate
            );
        }
        for (n, s) in &self.index_wait {
            let _ = writeln!(
                o,
                "\nAfter loading {} rows the index optimiser needed {s:.0} s more (until the server was idle for 5 s).",
                short(*n)
            );
        }
        o.push('\n');

        if let Some(title) = &self.digits_title {
            let _ = writeln!(o, "## A real data set: {title}\n");
            let _ = writeln!(o, "The filter `cat < 10` keeps the digit 0 (about 10%).\n");
            let _ = writeln!(
                o,
                "| path | filter | p50 ms | p99 ms | recall@10 |\n|---|---|---|---|---|"
            );
            for r in self.records.iter().filter(|r| r.data == "digits") {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:.3} |",
                    r.section,
                    FILTERS[r.filter].label,
                    ms(r.run.p50),
                    ms(r.run.p99),
                    r.run.recall
                );
            }
            o.push('\n');
        }
        if let Some(dir) = &self.plots {
            let _ = writeln!(o, "## Plots\n");
            let _ = writeln!(
                o,
                "![Recall against QPS]({0}/recall_qps.png)\n\n![Latency against data size]({0}/latency_size.png)\n",
                dir.display()
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "## Notes from this run\n");
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
            o.push('\n');
        }
        o
    }

    /// Workloads whose answers are wrong rather than slow: the exact scan must find every
    /// true neighbour, and the index (at its default ef) and the direct calls nearly all.
    pub fn wrong_answers(&self) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| match r.section {
                "exact" => r.run.recall < 0.999,
                "latency" | "direct" | "concurrency" | "cassandra-proxy" => r.run.recall < 0.9,
                _ => false,
            })
            .map(|r| format!("{} rows, {}: recall {:.3}", r.n, r.run.label, r.run.recall))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "command": self.command,
            "machine": machine(),
            "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
            "records": self.records.iter().map(|r| serde_json::json!({
                "data": r.data, "n": r.n, "section": r.section, "k": r.k, "clients": r.clients,
                "filter": FILTERS[r.filter].label, "ef": r.ef, "run": r.run.json(),
            })).collect::<Vec<_>>(),
            "ingest": self.ingest.iter().map(|i| serde_json::json!({
                "backend": i.backend, "method": i.method, "rows": i.rows, "rate": i.rate,
            })).collect::<Vec<_>>(),
            "memory": self.memory.iter().map(|m| serde_json::json!({
                "data": m.0, "n": m.1, "peak_mib": m.2, "rss_mib": m.3,
            })).collect::<Vec<_>>(),
        })
    }

    /// Write the report into `out`, keeping the sections other commands own (between
    /// `<!-- name -->` markers) and a hand-written `<!-- analysis -->` section; and the JSON.
    pub fn write(&self, out: &Path, json: &Path) -> anyhow::Result<()> {
        let previous = std::fs::read_to_string(out).unwrap_or_default();
        let kept = |name: &str| {
            let (open, close) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
            let a = previous.find(&open)?;
            let b = previous[a..].find(&close)? + a;
            Some(&previous[a..b + close.len()])
        };
        let mut text = self.markdown(kept("analysis"));
        for name in [
            "quantization",
            "load",
            "statements",
            "qdrant-server",
            "jsonb",
            "ingest",
            "langgraph",
        ] {
            if let Some(section) = kept(name) {
                text.push_str(section);
                text.push_str("\n\n");
            }
        }
        std::fs::write(out, text.trim_end().to_string() + "\n")?;
        if let Some(dir) = json.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(json, serde_json::to_string_pretty(&self.json())?)?;
        Ok(())
    }
}

/// Put `section` (which carries its own `<!-- name -->` markers) into the file `out`,
/// in place of the previous one, or at the end.
pub fn replace_section(out: &Path, name: &str, section: &str) -> anyhow::Result<()> {
    let previous = std::fs::read_to_string(out).unwrap_or_default();
    let (open, close) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let text = match (previous.find(&open), previous.find(&close)) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{}{}",
            &previous[..a],
            section.trim_end(),
            &previous[b + close.len()..]
        ),
        _ => format!("{}\n\n{}\n", previous.trim_end(), section.trim_end()),
    };
    std::fs::write(out, text)?;
    Ok(())
}
