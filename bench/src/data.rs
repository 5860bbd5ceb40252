//! The benchmark's data: clustered synthetic unit vectors with a filter column of known
//! selectivity, the scikit-learn handwritten digits, and exact ground truth (cached).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use vectorgate::store::Distance;

/// A small deterministic generator (SplitMix64), so a seed gives the same data on every
/// machine and with every version of every crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The filter column of row `id`: 0..=99, a hash of the id, so every filter on it passes
/// rows spread over all clusters and all insertion order.
pub fn cat_of(id: usize) -> i32 {
    (mix(id as u64 ^ 0x5EED) % 100) as i32
}

/// A filter of known selectivity on `cat`.
#[derive(Clone, Copy)]
pub struct Filter {
    pub label: &'static str,
    /// The SQL (and CQL) condition; empty for no filter.
    pub sql: &'static str,
    pub pass: fn(i32) -> bool,
}

pub const FILTERS: [Filter; 4] = [
    Filter {
        label: "no filter",
        sql: "",
        pass: |_| true,
    },
    Filter {
        label: "50% pass",
        sql: "cat < 50",
        pass: |c| c < 50,
    },
    Filter {
        label: "10% pass",
        sql: "cat < 10",
        pass: |c| c < 10,
    },
    Filter {
        label: "1% pass",
        sql: "cat = 7",
        pass: |c| c == 7,
    },
];

pub struct Dataset {
    /// Name used in table names and cache files.
    pub name: String,
    pub title: String,
    pub distance: Distance,
    pub vectors: Vec<Vec<f32>>,
    pub cats: Vec<i32>,
    pub queries: Vec<Vec<f32>>,
    /// truth[filter][query]: ids of the exact nearest rows, nearest first (up to KMAX).
    pub truth: Vec<Vec<Vec<i64>>>,
}

pub const KMAX: usize = 100;

impl Dataset {
    pub fn dim(&self) -> usize {
        self.queries.first().map_or(0, |q| q.len())
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `n` unit vectors of `dim` dimensions around 100 random centres (cosine), and
/// `queries` more drawn the same way.
pub fn synthetic(n: usize, dim: usize, queries: usize, seed: u64, cache: &Path) -> Dataset {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..100)
        .map(|_| (0..dim).map(|_| rng.gaussian()).collect())
        .collect();
    let draw = |rng: &mut Rng| {
        let c = &centres[rng.below(centres.len())];
        unit(c.iter().map(|x| x + 0.7 * rng.gaussian()).collect())
    };
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| draw(&mut rng)).collect();
    // Queries come from their own stream so they do not depend on n.
    let mut qrng = Rng::new(seed ^ 0xABCD);
    let qs: Vec<Vec<f32>> = (0..queries).map(|_| draw(&mut qrng)).collect();
    let cats = (0..n).map(cat_of).collect();
    let name = format!("synth{}", short(n));
    let mut d = Dataset {
        title: format!("{} clustered {dim}-d unit vectors (cosine)", short(n)),
        name,
        distance: Distance::Cosine,
        vectors,
        cats,
        queries: qs,
        truth: Vec::new(),
    };
    d.truth = truth(
        &d,
        &cache.join(format!("truth-{}-q{queries}-s{seed}.bin", d.name)),
    );
    d
}

/// The 1,797 8x8 handwritten digits scikit-learn ships (64 dimensions, pixel values
/// 0..16, L2), exported by `bench/plot.py digits FILE` as `label<TAB>v1,v2,...` lines.
/// The last 197 are the queries; `cat` is the digit's label times 10 (so `cat < 10` is
/// "the digit 0", about 10%).
pub fn digits(file: &Path, cache: &Path) -> anyhow::Result<Dataset> {
    let text = std::fs::read_to_string(file)?;
    let mut all = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (label, v) = line
            .split_once('\t')
            .ok_or_else(|| anyhow::anyhow!("bad digits line"))?;
        let v: Vec<f32> = v.split(',').map(|x| x.parse()).collect::<Result<_, _>>()?;
        all.push((label.parse::<i32>()? * 10, v));
    }
    anyhow::ensure!(all.len() > 400, "too few digits in {}", file.display());
    let split = all.len() - 197;
    let queries = all[split..].iter().map(|x| x.1.clone()).collect();
    all.truncate(split);
    let mut d = Dataset {
        name: "digits".into(),
        title: format!("scikit-learn digits: {split} 64-d vectors (L2), 197 held-out queries"),
        distance: Distance::L2,
        cats: all.iter().map(|x| x.0).collect(),
        vectors: all.into_iter().map(|x| x.1).collect(),
        queries,
        truth: Vec::new(),
    };
    d.truth = truth(&d, &cache.join("truth-digits.bin"));
    Ok(d)
}

pub fn short(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Exact top-KMAX ids of every query under every filter: read from `path` if a previous
/// run computed them for the same data, else computed here (all cores) and written.
fn truth(d: &Dataset, path: &Path) -> Vec<Vec<Vec<i64>>> {
    let expect = FILTERS.len() * d.queries.len();
    if let Some(t) = read_truth(path, expect) {
        return t;
    }
    let started = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = d.queries.len().div_ceil(threads).max(1);
    let per_query: Vec<Vec<Vec<i64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = d
            .queries
            .chunks(chunk)
            .map(|qs| {
                s.spawn(move || {
                    qs.iter()
                        .map(|q| exact_all_filters(d, q))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let truth: Vec<Vec<Vec<i64>>> = (0..FILTERS.len())
        .map(|f| per_query.iter().map(|q| q[f].clone()).collect())
        .collect();
    eprintln!(
        "ground truth for {}: {} queries x {} filters in {:.1}s",
        d.name,
        d.queries.len(),
        FILTERS.len(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = write_truth(path, &truth) {
        eprintln!("could not cache ground truth at {}: {e}", path.display());
    }
    truth
}

/// One distance pass over all rows; the top KMAX per filter.
fn exact_all_filters(d: &Dataset, q: &[f32]) -> Vec<Vec<i64>> {
    let dist: Vec<(f64, usize)> = d
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (fast_distance(d.distance, q, v), i))
        .collect();
    FILTERS
        .iter()
        .map(|f| {
            let mut pass: Vec<(f64, usize)> = dist
                .iter()
                .copied()
                .filter(|(_, i)| (f.pass)(d.cats[*i]))
                .collect();
            let k = KMAX.min(pass.len());
            if k > 0 && k < pass.len() {
                pass.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                pass.truncate(k);
            }
            pass.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            pass.into_iter().map(|(_, i)| i as i64).collect()
        })
        .collect()
}

/// The distance the index ranks by, in f32 with f64 accumulation (ties are rare and a
/// tie broken the other way costs the index recall it deserves anyway).
pub fn fast_distance(metric: Distance, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        // Synthetic vectors are unit length: cosine distance is 1 - dot.
        Distance::Cosine => 1.0 - a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum::<f64>(),
        _ => metric.exact(a, b),
    }
}

fn read_truth(path: &Path, expect: usize) -> Option<Vec<Vec<Vec<i64>>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let mut words = bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()));
    let filters = words.next()? as usize;
    let queries = words.next()? as usize;
    if filters * queries != expect {
        return None;
    }
    let mut out = vec![Vec::with_capacity(queries); filters];
    for f in out.iter_mut() {
        for _ in 0..queries {
            let len = words.next()? as usize;
            f.push(
                (0..len)
                    .map(|_| words.next())
                    .collect::<Option<Vec<i64>>>()?,
            );
        }
    }
    Some(out)
}

fn write_truth(path: &Path, truth: &[Vec<Vec<i64>>]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut words = vec![
        truth.len() as i64,
        truth.first().map_or(0, |f| f.len()) as i64,
    ];
    for f in truth {
        for q in f {
            words.push(q.len() as i64);
            words.extend(q);
        }
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(&bytes)?;
    std::fs::rename(tmp, path)
}

/// Where cached ground truth lives.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VECTORGATE_BENCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("vectorgate/bench"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/vectorgate/bench"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("vectorgate-bench"))
}

/// Rows as COPY text: `id<TAB>cat<TAB>title<TAB>[v1,...]`.
pub fn copy_text(d: &Dataset, range: std::ops::Range<usize>) -> String {
    let mut s = String::with_capacity(range.len() * (d.dim() * 11 + 32));
    for i in range {
        s.push_str(&format!("{i}\t{}\tdoc {i}\t", d.cats[i]));
        vector_literal(&mut s, &d.vectors[i]);
        s.push('\n');
    }
    s
}

pub fn vector_literal(s: &mut String, v: &[f32]) {
    s.push('[');
    for (j, x) in v.iter().enumerate() {
        if j > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
}

/// Recall of `got` against the first `k` of `truth`.
pub fn recall(got: &[i64], truth: &[i64], k: usize) -> (usize, usize) {
    let t = &truth[..k.min(truth.len())];
    (t.iter().filter(|x| got.contains(x)).count(), t.len())
}
