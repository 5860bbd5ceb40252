//! CPU time spent during a measurement, from `/proc` (Linux): the machine's busy time and
//! each process's, grouped by program name (`java` for Cassandra, `qdrant`, the proxy,
//! this client). On a machine where the stores, the proxy and the client share the
//! cores, these say whether a load rate was bounded by the CPU and whose work it was.

use std::collections::HashMap;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// A reading of the counters.
pub struct Reading {
    /// Busy and total ticks of the whole machine (all cores).
    busy: u64,
    total: u64,
    /// Ticks per process id, with the program's name.
    procs: HashMap<u32, (String, u64)>,
}

/// CPU spent between two readings.
#[derive(Clone, Debug)]
pub struct Spent {
    /// Cores kept busy on average (all processes; 2.0 is all of a 2-core machine).
    pub busy_cores: f64,
    /// CPU seconds per program name.
    pub by_name: Vec<(String, f64)>,
}

impl Spent {
    /// CPU seconds of the programs whose name starts with `prefix`.
    pub fn of(&self, prefix: &str) -> f64 {
        self.by_name
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, s)| s)
            .sum()
    }
}

fn machine() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal ...
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn process(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    // After the name: state (field 3) ... utime (14), stime (15).
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

impl Reading {
    pub fn now() -> Reading {
        let (busy, total) = machine();
        let procs = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, process(pid)?)))
            .collect();
        Reading { busy, total, procs }
    }

    /// What was spent from this reading until now. A process that ended meanwhile is
    /// not counted; one that started is counted from zero.
    pub fn spent(&self) -> Spent {
        let now = Reading::now();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let total = now.total.saturating_sub(self.total) as f64;
        let busy_cores = match total > 0.0 {
            true => now.busy.saturating_sub(self.busy) as f64 / total * cores,
            false => 0.0,
        };
        let mut by: HashMap<String, f64> = HashMap::new();
        for (pid, (name, ticks)) in &now.procs {
            let before = match self.procs.get(pid) {
                Some((n, t)) if n == name => *t,
                _ => 0,
            };
            *by.entry(name.clone()).or_default() += ticks.saturating_sub(before) as f64 / TICKS;
        }
        let mut by_name: Vec<(String, f64)> = by.into_iter().filter(|(_, s)| *s > 0.0).collect();
        by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
        Spent {
            busy_cores,
            by_name,
        }
    }
}
